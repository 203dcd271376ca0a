"""kolyric: write Korean song lyrics with a Korean GPT-2, in the terminal.

Importing this package is cheap on purpose: torch and transformers load only when the
engine or training code is first used, so the app can paint before they are imported.
"""

__version__ = "0.1.0"
