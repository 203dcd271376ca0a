"""`kolyric lyrics check FILE`: syllable counts, rhyme keys and schemes per section.

Reads a UTF-8 draft (a leading BOM is fine; ``-`` reads stdin) and prints one table per
section, or the analysis as JSON with ``--json``.  Problems reading the file become a
``CLIError`` naming it.  Only kolyric.korean is imported: no torch, no transformers.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import unicodedata
from pathlib import Path
from typing import TextIO

from kolyric.cli import CLIError
from kolyric.korean.rhyme import MAX_RHYME_SYLLABLES, RhymeOptions
from kolyric.korean.sections import Analysis, SectionAnalysis, analyse

_BOM = b"\xef\xbb\xbf"


def _rhyme_syllables(value: str) -> int:
    from kolyric.engine.settings import parse_int, shown  # bounded: a 5,000-digit value is a range message too

    try:
        return parse_int(value, 1, MAX_RHYME_SYLLABLES)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [1, {MAX_RHYME_SYLLABLES}], got {shown(value)}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lyrics_action", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="count syllables and find rhymes, section by section",
        description="Count syllables and find rhymes in a lyric draft, section by section.",
    )
    check.add_argument("file", metavar="FILE", help="UTF-8 lyrics file, or - for stdin")
    check.add_argument("--json", action="store_true", help="print the analysis as JSON")
    check.add_argument(
        "--rhyme-syllables",
        type=_rhyme_syllables,
        default=1,
        metavar="N",
        help=f"compare the last N syllables of each line (1-{MAX_RHYME_SYLLABLES}, default 1)",
    )
    check.add_argument("--strict", action="store_true", help="also match the final consonant (받침)")
    check.add_argument(
        "--no-families",
        action="store_true",
        help="do not treat alike vowels (ㅐ/ㅔ, ㅒ/ㅖ, ㅚ/ㅙ/ㅞ, ㅢ/ㅣ) as equal",
    )


def read_text(file: str) -> str:
    """The file's text (``-`` for stdin); any problem becomes a CLIError naming it."""
    label = "<stdin>" if file == "-" else file
    try:
        if file == "-":
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
        else:
            data = Path(file).read_bytes()
    except FileNotFoundError:
        raise CLIError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"{label}: is a directory, not a lyrics file") from None
    except PermissionError:
        raise CLIError(f"{label}: permission denied") from None
    except OSError as exc:
        raise CLIError(f"{label}: cannot read ({exc.strerror or exc})") from None
    skipped = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skipped + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise CLIError(f"{label}: not valid UTF-8 at byte {offset} (line {line}); save it as UTF-8") from None


def _width(text: str) -> int:
    """Terminal columns: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _printable(text: str) -> str:
    # Control characters in a draft would move the cursor or recolour the terminal.
    return "".join("\ufffd" if unicodedata.category(ch) == "Cc" and ch != "\t" else ch for ch in text)


def _print_section(section: SectionAnalysis, out: TextIO) -> None:
    title = f"[{section.name}]" if section.name is not None else "(before the first header)"
    kind = f"{section.kind}, " if section.kind else ""
    print(f"{_printable(title)}  ({kind}line {section.start_line})", file=out)
    if not section.lines:
        print("  (no lyric lines)", file=out)
        return
    keys = [line.rhyme_label or "-" for line in section.lines]  # the line's own vowels; grp groups
    key_width = max(5, *(_width(k) for k in keys))
    num_width = max(4, *(len(str(line.number)) for line in section.lines))
    print(f"  {'line':>{num_width}}  syl  {_pad('rhyme', key_width)}  grp  text", file=out)
    for line, key in zip(section.lines, keys):
        print(
            f"  {line.number:>{num_width}}  {line.syllables:>3}  {_pad(key, key_width)}"
            f"  {line.letter:^3}  {_printable(line.text.strip())}",
            file=out,
        )
    print(f"  pattern: {section.pattern}", file=out)
    print(f"  scheme:  {section.scheme}", file=out)


def print_analysis(analysis: Analysis, out: TextIO) -> None:
    """The human-readable report: one table per section, then a one-line summary."""
    for i, section in enumerate(analysis.sections):
        if i:
            print(file=out)
        _print_section(section, out)
    lines = analysis.lines
    if not lines:
        print("no lyric lines", file=out)
        return
    total = sum(line.syllables for line in lines)
    sections = len(analysis.sections)
    print(
        f"\n{sections} section{'s' * (sections != 1)}, {len(lines)} line{'s' * (len(lines) != 1)}, {total} syllables",
        file=out,
    )


def _write(text: str) -> None:
    out = sys.stdout
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
    if encoding not in ("utf8", "utf16", "utf32") and hasattr(out, "reconfigure"):
        # A terminal that cannot show Hangul gets escapes instead of a crash.
        out.reconfigure(errors="backslashreplace")
    # `| head` (the reader left) and `> /dev/full` are kolyric.cli.main's: it ends quietly or
    # says, in one line, that the output could not be written.
    out.write(text)
    out.flush()


def run(args: argparse.Namespace) -> int:
    text = read_text(args.file)
    options = RhymeOptions(syllables=args.rhyme_syllables, strict=args.strict, families=not args.no_families)
    analysis = analyse(text, options)
    if args.json:
        _write(json.dumps(analysis.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        buffer = io.StringIO()
        print_analysis(analysis, buffer)
        _write(buffer.getvalue())
    return 0
