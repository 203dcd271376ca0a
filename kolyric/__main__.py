from kolyric.cli import main

raise SystemExit(main())
