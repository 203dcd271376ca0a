"""The lyric constraints' command-line flags (``kolyric generate``): built from the spec's ranges
(``kolyric.engine.lyric.spec``), read back into a ``LyricConstraints``."""

from __future__ import annotations

import argparse

from kolyric.engine.lyric.spec import MODES, RANGES, ConstraintError, ConstraintProblem, LyricConstraints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lyric constraints (work with every strategy and preset)")
    group.add_argument(
        "--syllables", default=None, metavar="N", help=f"syllables per generated line; {RANGES['syllables']}"
    )
    group.add_argument(
        "--rhyme",
        default=None,
        metavar="TEXT",
        help="a syllable or line the generated line must rhyme with (its last vowel)",
    )
    group.add_argument("--lines", default=None, metavar="K", help=f"lines to generate; {RANGES['lines']}")
    group.add_argument("--pattern", default=None, metavar="8-8-7-9", help="syllables per line, one count a line")
    group.add_argument(
        "--scheme",
        default=None,
        metavar="AABB",
        help="rhyme scheme; letters before the generated lines' match the draft's last lines",
    )
    group.add_argument("--strict", action="store_true", default=None, help="rhymes also match the final consonant")
    group.add_argument(
        "--rhyme-syllables",
        dest="rhyme_syllables",
        default=None,
        metavar="N",
        help=f"trailing syllables that must rhyme; {RANGES['rhyme_syllables']} (default 1)",
    )
    group.add_argument(
        "--no-families",
        dest="families",
        action="store_false",
        default=None,
        help="rhyme vowels exactly (ㅐ and ㅔ differ)",
    )
    group.add_argument(
        "--mode",
        default=None,
        choices=MODES,
        help="next: new lines after the prompt line (default); continue: complete the prompt line",
    )
    group.add_argument(
        "--no-whole-words",
        dest="whole_words",
        action="store_false",
        default=None,
        help="let a counted line end wherever its count does, even inside a word",
    )


_MAIN = ("syllables", "rhyme", "lines", "pattern", "scheme")
_MODIFIERS = {"strict": "--strict", "rhyme_syllables": "--rhyme-syllables", "families": "--no-families"}


def from_arguments(args: argparse.Namespace) -> LyricConstraints | None:
    """The constraints the flags ask for, or None when none is given; ValueError naming the field."""
    raw = {name: getattr(args, name, None) for name in (*_MAIN, *_MODIFIERS, "mode", "whole_words")}
    raw = {k: v for k, v in raw.items() if v is not None}
    if not any(k in raw for k in _MAIN):
        extra = [k for k in raw if k not in ("mode", "whole_words")]
        if extra:
            raise ConstraintError(
                [ConstraintProblem(k, raw[k], f"{_MODIFIERS[k]} needs --rhyme or --scheme") for k in extra]
            )
        if "whole_words" in raw:
            raise ConstraintError(
                [ConstraintProblem("whole_words", False, "--no-whole-words needs --syllables or --pattern")]
            )
        return None
    if not any(k in raw for k in ("rhyme", "scheme")):
        extra = [k for k in _MODIFIERS if k in raw]
        if extra:
            raise ConstraintError(
                [ConstraintProblem(k, raw[k], f"{_MODIFIERS[k]} needs --rhyme or --scheme") for k in extra]
            )
    return LyricConstraints.from_dict(raw)


__all__ = ["add_arguments", "from_arguments"]
