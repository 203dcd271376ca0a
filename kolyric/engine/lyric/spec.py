"""Lyric constraints: syllables per line, rhyme, several lines with a pattern and a rhyme scheme.

``LyricConstraints`` is what a user asks for (this module: the spec and its validation, no
torch). The decoding loop (kolyric.engine.stream) builds a ``ConstraintState``
(``kolyric.engine.lyric.state``) from it and consults it every step, for greedy, sampling and
beam search alike. Its ``processor`` is a transformers-style logits processor that masks the
tokens that would break the constraint, from per-token tensors profiled once per tokenizer
(``vocab_profile``); what it reports is ``kolyric.engine.lyric.report``.

Rules, in the order a line is written:

* A token may not overshoot the line's syllable count, nor leave a remainder the vocabulary
  cannot fill (ending in the rhyme); tokens with zero syllables (spaces, punctuation) are
  allowed mid-line, at most two in a row. Counts follow ``count_syllables``; tokens holding
  digits or Latin letters are not used on a counted line (their count depends on their
  neighbours: "2" + "4" reads 이십사).
* **Where a line ends.** With a newline token in the vocabulary (and prompts joined by
  newlines), a line ends with a line break and the last line with a break or the end token.
  Without one (NSMC-trained models, whose prompts join draft lines with a space), a line ends
  at its syllable count and the next line begins with the next word (a token starting with a
  space): lines are word-separated, as the model sees draft lines in its prompt, and the
  report (and the candidate's text) splits them; the last line ends with the end token. Such a
  vocabulary needs a syllable count to tell several lines apart.
* **Byte-level tokens** whose text is only part of a character (U+FFFD when decoded alone)
  are never used under a constraint: their syllables are unknown until later bytes arrive. The
  constrained text is therefore made of whole characters and is counted exactly.
* **Rhyme**: the line's last ``rhyme_syllables`` Hangul syllables must match the target's
  vowels (and finals with ``strict``), by the vowel families of ``kolyric.korean.rhyme``.
* **Whole words** (``whole_words``, on by default): on a counted line, the token that completes
  the count must also complete a word, by the model's own choice. Precisely: after that token,
  the word-break tokens (text starting with whitespace, ``▁`` or a line break, or with
  punctuation, and the end token: ``vocab_profile``'s ``word_break``) must together hold at
  least ``WORD_END_MASS`` (one half) of the model's next-token probability, the model's own
  distribution before any processor. The model would then more likely than not end the word
  there, so the line break that follows is not forced after a stem (``좋``, ``싶``, ``줬``) that
  it would have continued (``좋아``). A token whose own text ends the line (``좋아\n``)
  completes its word by definition. Why a share and not "the likeliest next token is a break"
  or "the sampled next token is a break": a word end is often spread over many tokens (a line
  break, and a space before any of hundreds of words), whose sum is the probability that the
  word ends while no single one of them need be the likeliest; and a share is one property of
  the model's distribution, the same for every strategy, where a sampled token would make a
  line's verdict a coin toss (and beam search has none). How it is enforced
  (``kolyric.engine.lyric.lookahead``): greedy and sampling hold the completing token back until the
  next step's forward pass gives the distribution after it (a token that passes costs nothing),
  and take one that fails back (the KV cache cropped by one position), choosing again down
  their ranking with the next candidates measured in batched forward passes, up to
  ``WORD_END_TRIES`` a line; beam search measures the continuations it could choose before it
  chooses, and ranks a hypothesis that fails below every one that does not. A line no
  candidate could end on a whole word keeps the ending likeliest to, and the report marks it
  ``ends mid-word`` with its measure. Tokens forced by a branch are measured, never taken back.
  Each line's report gives its measure (``word_end``).
* **Failure is reported, never ignored**: when no token can continue (nothing in the vocabulary
  rhymes, other controls ruled out every fitting token, max_length ran out), the row ends and
  its report says ``satisfied: False`` and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from kolyric.engine.settings import shown
from kolyric.korean.rhyme import MAX_RHYME_SYLLABLES, RhymeOptions, rhyme_syllables

MAX_SYLLABLES = 40
MAX_LINES = 16
MAX_SCHEME = 32
MAX_ZERO_RUN = 2  # zero-syllable tokens in a row on a counted line
WORD_END_MASS = 0.5
"""The whole-word rule: the share of the model's next-token probability on word breaks after the
token that completes a line's count (see the module's docstring)."""
WORD_END_TRIES = 32
"""Candidate endings measured per line (greedy, sampling) before the line keeps its best ending
and is reported."""
FREE_LINE_TOKENS = 32
"""The default length budget of a line with no syllable count, in tokens."""
FREE_LETTERS = "xX-."  # scheme letters for "no rhyme required"
MODES = ("next", "continue")


# -- validation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstraintProblem:
    field: str
    value: object
    message: str
    valid: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        value = self.value if isinstance(self.value, (int, float, str, bool, type(None))) else repr(self.value)
        return {"field": self.field, "value": value, "message": self.message, "valid": self.valid or None}


class ConstraintError(ValueError):
    """Every invalid constraint field at once; ``problems`` names each."""

    def __init__(self, problems: list[ConstraintProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


RANGES = {
    "syllables": f"an integer in [1, {MAX_SYLLABLES}]",
    "lines": f"an integer in [1, {MAX_LINES}]",
    "rhyme_syllables": f"an integer in [1, {MAX_RHYME_SYLLABLES}]",
    "pattern": f"syllable counts 1..{MAX_SYLLABLES} joined by '-', e.g. 8-8-7-9",
    "scheme": f"letters, one per line (x or - for no rhyme), e.g. AABB; at most {MAX_SCHEME}",
    "rhyme": "text ending in Hangul syllables, e.g. 랑 or a whole line",
    "mode": "next or continue",
}


def parse_pattern(value: object) -> tuple[int, ...]:
    """``"8-8-7-9"`` / ``[8, 8, 7, 9]`` -> (8, 8, 7, 9); ValueError naming the field otherwise."""
    if isinstance(value, str):
        parts = [p for p in value.replace(",", "-").replace("/", "-").replace(" ", "-").split("-") if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError(f"must be {RANGES['pattern']}, got {shown(value)}")
    out = []
    for p in parts:
        n = _int(p)
        if n is None or not 1 <= n <= MAX_SYLLABLES:
            raise ValueError(f"must be {RANGES['pattern']}, got {shown(value)} ({shown(p)} is not 1..{MAX_SYLLABLES})")
        out.append(n)
    if not 1 <= len(out) <= MAX_LINES:
        raise ValueError(f"must have 1 to {MAX_LINES} counts, got {len(out)} in {shown(value)}")
    return tuple(out)


def parse_scheme(value: object) -> str:
    text = "".join(str(value).split()) if isinstance(value, str) else None
    if not text or len(text) > MAX_SCHEME or not all(c.isascii() and (c.isalpha() or c in FREE_LETTERS) for c in text):
        raise ValueError(f"must be {RANGES['scheme']}, got {shown(value)}")
    return "".join("x" if c in FREE_LETTERS else c.upper() for c in text)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        digits = value.strip()
        # Past any range here, and past Python's 4,300-digit int() limit: no conversion needed.
        return int(digits) if len(digits) <= 18 else None
    return None


def _key(key: object) -> str:
    """An unknown field's name as a one-line message can hold it."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 40 else shown(key)


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return None


# -- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LyricConstraints:
    """What the generated lines must satisfy. Construction validates (every problem at once)."""

    syllables: int | None = None
    """Syllables in every generated line (1..40); in continue mode line 1 counts the typed part."""
    rhyme: str | None = None
    """A syllable or a line to rhyme with: the last ``rhyme_syllables`` syllables are compared."""
    lines: int | None = None
    """Lines to generate (1..16); default: the pattern's or the scheme's length, else 1."""
    pattern: tuple[int, ...] | None = None
    """Syllables per line, e.g. (8, 8, 7, 9) or "8-8-7-9" (instead of ``syllables``)."""
    scheme: str | None = None
    """Rhyme scheme, one letter per line; letters before the generated lines' align with the
    draft's last lines, whose endings then fix those groups' rhymes. x = no rhyme required."""
    strict: bool = False
    """Also match the final consonant (받침)."""
    rhyme_syllables: int = 1
    """Trailing syllables that must rhyme (1..3)."""
    families: bool = True
    """Treat alike vowels (ㅐ/ㅔ …) and finals' sounds as equal."""
    mode: str = "next"
    """next: the lines follow the prompt line; continue: line 1 completes the prompt line."""
    whole_words: bool = True
    """A counted line ends where the model itself would end the word (see the module's docstring)."""

    def __post_init__(self) -> None:
        problems: list[ConstraintProblem] = []

        def bad(name: str, message: str) -> None:
            problems.append(ConstraintProblem(name, getattr(self, name), message, RANGES.get(name, "")))

        for name, high in (("syllables", MAX_SYLLABLES), ("lines", MAX_LINES)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high):
                bad(name, f"must be {RANGES[name]}, got {shown(value)}")
        n = self.rhyme_syllables
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RHYME_SYLLABLES:
            bad("rhyme_syllables", f"must be {RANGES['rhyme_syllables']}, got {shown(n)}")
            n = 1
        if self.pattern is not None:
            try:
                object.__setattr__(self, "pattern", parse_pattern(self.pattern))
            except ValueError as exc:
                bad("pattern", str(exc))
        if self.scheme is not None:
            try:
                object.__setattr__(self, "scheme", parse_scheme(self.scheme))
            except ValueError as exc:
                bad("scheme", str(exc))
        for name in ("strict", "families", "whole_words"):
            if not isinstance(getattr(self, name), bool):
                bad(name, f"must be true or false, got {shown(getattr(self, name))}")
        if self.mode not in MODES:
            bad("mode", f"must be {RANGES['mode']}, got {shown(self.mode)}")
        if self.rhyme is not None:
            syl = rhyme_syllables(self.rhyme) if isinstance(self.rhyme, str) else ""
            if not syl:
                bad("rhyme", f"must be {RANGES['rhyme']}, got {shown(self.rhyme)}")
            elif len(syl) < n:
                bad("rhyme", f"{shown(self.rhyme)} has {len(syl)} Hangul syllable(s) but rhyme_syllables is {n}")
        if problems:
            raise ConstraintError(problems)
        if self.syllables is not None and self.pattern is not None:
            bad("pattern", "give syllables or pattern, not both")
        k = self.n_lines
        if self.lines is not None and self.pattern is not None and len(self.pattern) != self.lines:
            bad("pattern", f"has {len(self.pattern)} counts for {self.lines} lines")
        if self.scheme is not None and len(self.scheme) < k:
            bad("scheme", f"has {len(self.scheme)} letters for {k} lines")
        targets = self.targets
        if targets and (self.rhyme is not None or self.scheme) and min(targets) < n:
            bad("rhyme_syllables", f"{n} rhyming syllables do not fit a {min(targets)}-syllable line")
        if problems:
            raise ConstraintError(problems)

    # -- derived ------------------------------------------------------------------------------
    @property
    def n_lines(self) -> int:
        if self.lines is not None:
            return self.lines
        if self.pattern is not None:
            return len(self.pattern)
        return len(self.scheme) if self.scheme else 1

    @property
    def targets(self) -> tuple[int, ...] | None:
        """Syllables per generated line, or None when lines are not counted."""
        if self.pattern is not None:
            return self.pattern
        return (self.syllables,) * self.n_lines if self.syllables is not None else None

    @property
    def active(self) -> bool:
        """Whether anything is asked for (False when only options such as ``strict`` are set)."""
        return any(getattr(self, name) is not None for name in ("syllables", "rhyme", "lines", "pattern", "scheme"))

    @property
    def rhyme_options(self) -> RhymeOptions:
        return RhymeOptions(self.rhyme_syllables, self.strict, self.families)

    def length_budget(self) -> int:
        """New tokens that comfortably fit the lines asked for: per counted line 1.5 tokens a
        syllable (a token holds at least one syllable or a space, punctuation at most twice in a
        row) plus its break, ``FREE_LINE_TOKENS`` per uncounted line, and the prompt line's break."""
        targets = self.targets or (None,) * self.n_lines
        return 2 + sum(FREE_LINE_TOKENS if t is None else (3 * t + 1) // 2 + 3 for t in targets)

    def describe(self) -> str:
        parts = []
        if self.pattern:
            parts.append("pattern " + "-".join(map(str, self.pattern)))
        elif self.syllables:
            parts.append(f"{self.syllables} syllables")
        if self.rhyme:
            parts.append(f"rhyme {self.rhyme}" + (" (strict)" if self.strict else ""))
        if self.n_lines > 1 or self.scheme:
            parts.append(f"{self.n_lines} lines" + (f" {self.scheme}" if self.scheme else ""))
        return " · ".join(parts) or "no constraint"

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["pattern"] = list(self.pattern) if self.pattern else None
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> LyricConstraints:
        """From JSON-ish values (numbers as strings too); every problem reported at once."""
        names = [f.name for f in dataclasses.fields(cls)]
        problems = [
            ConstraintProblem(_key(k), v, f"unknown constraint; known: {', '.join(names)}")
            for k, v in raw.items()
            if k not in names
        ]
        values: dict[str, object] = {}
        for key, value in raw.items():
            if key not in names or value is None or value == "":
                continue
            if key in ("syllables", "lines", "rhyme_syllables"):
                n = _int(value)
                if n is None:
                    problems.append(
                        ConstraintProblem(key, value, f"must be {RANGES[key]}, got {shown(value)}", RANGES[key])
                    )
                    continue
                value = n
            elif key in ("strict", "families", "whole_words"):
                b = _bool(value)
                if b is None:
                    problems.append(ConstraintProblem(key, value, f"must be true or false, got {shown(value)}"))
                    continue
                value = b
            elif key == "mode" and isinstance(value, str):
                value = value.strip().lower()
            values[key] = value
        try:
            made = cls(**values)
        except ConstraintError as exc:
            problems += exc.problems
            made = None
        if problems:
            raise ConstraintError(problems)
        return made


def from_dict(raw: Mapping[str, object]) -> LyricConstraints | None:
    """``LyricConstraints.from_dict``, or None when it asks for nothing (no syllables, rhyme,
    lines, pattern or scheme: options such as ``strict`` alone constrain nothing)."""
    made = LyricConstraints.from_dict(raw) if raw else None
    return made if made is not None and made.active else None


__all__ = [
    "FREE_LINE_TOKENS",
    "MAX_LINES",
    "MAX_SYLLABLES",
    "MAX_ZERO_RUN",
    "MODES",
    "RANGES",
    "WORD_END_MASS",
    "WORD_END_TRIES",
    "ConstraintError",
    "ConstraintProblem",
    "LyricConstraints",
    "from_dict",
    "parse_pattern",
    "parse_scheme",
]
