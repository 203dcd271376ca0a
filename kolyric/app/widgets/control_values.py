"""The controls panel's fields and values, free of Textual: how each lyric constraint shows
(``CONSTRAINT_FIELDS``), a decoding control's value as its field holds it, the presets a set
of settings matches, restoring a draft's saved controls, and the text shown under a bad field.

Numbers are checked for their size as text before anything converts them (``int()`` refuses
more than 4,300 digits with an error of its own): a field holding a number no range could
hold is marked like any other bad value (``oversized``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from kolyric.engine.lyric.spec import RANGES, ConstraintProblem
from kolyric.engine.settings import PRESETS, DecodingSettings, FieldSpec, Problem, SettingsError, preset, text_form
from kolyric.engine.settings_fields import FIELDS

CUSTOM = "custom"
SWITCH = ("off", "on")
MAX_NUMBER_CHARS = 40  # longer than any value a numeric range takes ("0.000000001", "4294967295")
MAX_TEXT_CHARS = 500  # a rhyme may be a whole line, not a page
_COUNT = re.compile(r"[+-]?[0-9]{1,6}")  # ASCII digits: str.isdigit() also takes "²", which int() refuses
COUNT_FIELDS = ("syllables", "lines", "rhyme_syllables")
SAVED_PRESET = "from_preset"
"""The key beside the controls a draft saves naming the preset they were made from."""
FieldProblem = Problem | ConstraintProblem
"""A bad value in the panel: a decoding control's, or a lyric constraint's."""


@dataclass(frozen=True)
class ConstraintField:
    """How one ``LyricConstraints`` field shows in the panel (its checks live in constraints.py)."""

    name: str
    label: str
    help: str
    placeholder: str = ""
    choices: tuple[str, ...] | None = None
    default: str = ""


CONSTRAINT_FIELDS = (
    ConstraintField(
        "syllables",
        "syllables/line",
        f"every generated line has exactly this many syllables ({RANGES['syllables']}); Ctrl+T takes the cursor line's",
        "off · 1–40",
    ),
    ConstraintField(
        "rhyme",
        "rhyme with",
        f"the generated line's last syllable(s) rhyme with this ({RANGES['rhyme']}); Ctrl+T takes the cursor line's",
        "off · 랑",
    ),
    ConstraintField("lines", "lines", f"how many lines to generate ({RANGES['lines']})", "1 · 1–16"),
    ConstraintField("strict", "strict rhyme", "also match the final consonant (받침)", choices=SWITCH, default="off"),
    ConstraintField(
        "families",
        "vowel families",
        "alike vowels rhyme (ㅐ/ㅔ, ㅒ/ㅖ, ㅚ/ㅙ/ㅞ, ㅢ with ㅣ; strict: finals by their sound); off: each vowel"
        " rhymes only with itself; also what the gutter groups",
        choices=SWITCH,
        default="on",
    ),
    ConstraintField(
        "rhyme_syllables",
        "rhyming syllables",
        f"how many trailing syllables must rhyme ({RANGES['rhyme_syllables']}); also what the gutter shows",
        "1 · 1–3",
        default="1",
    ),
    ConstraintField(
        "pattern", "syllable pattern", f"syllables per line instead of one count ({RANGES['pattern']})", "off · 8-8-7-9"
    ),
    ConstraintField(
        "scheme",
        "rhyme scheme",
        f"rhyme letters per line ({RANGES['scheme']}); letters before the new lines match the draft's last lines",
        "off · AABB",
    ),
    ConstraintField(
        "mode",
        "mode",
        "next: new lines after the prompt; continue: finish the prompt line",
        choices=("next", "continue"),
        default="next",
    ),
    ConstraintField(
        "whole_words",
        "whole words",
        "a counted line ends where the model itself would end a word; off: the count alone decides,"
        " and a line may end mid-word",
        choices=SWITCH,
        default="on",
    ),
)


@lru_cache(maxsize=1)
def _preset_values() -> dict[str, dict[str, object]]:
    return {name: {k: v for k, v in preset(name).to_dict().items() if k not in ("seed", "n")} for name in PRESETS}


def matching_preset(settings: DecodingSettings) -> str | None:
    """The preset whose values equal ``settings`` (ignoring seed and n), if any."""
    mine = {k: v for k, v in settings.to_dict().items() if k not in ("seed", "n")}
    return next((name for name, theirs in _preset_values().items() if theirs == mine), None)


def oversized(raw_values: dict[str, object], raw_constraints: dict[str, object]) -> list[FieldProblem]:
    """Problems with values too long to be numbers (or field text) at all, found before any
    conversion: such a field is then left out of the checks that convert."""
    problems: list[FieldProblem] = []
    for name, raw in raw_values.items():
        spec = FIELDS.get(name)
        text = str(raw).strip() if isinstance(raw, str) else ""
        if spec is None:
            continue
        # a list's text past what its items could fill is refused before it is split
        limit = spec.max_items * (2 * spec.max_chars + 24) if spec.textual else MAX_NUMBER_CHARS
        if (spec.textual or spec.kind in (int, float)) and len(text) > limit:
            problems.append(
                Problem(name, text[:20] + "…", f"must be {spec.describe_range()}, got {len(text):,} characters")
            )
    for name, raw in raw_constraints.items():
        text = str(raw).strip() if isinstance(raw, str) else ""
        if not text:
            continue
        if name in COUNT_FIELDS and _not_a_count(text):
            problems.append(
                ConstraintProblem(
                    name,
                    text[:20],
                    f"must be {RANGES[name]}, got " + (f"{len(text):,} characters" if len(text) > 12 else repr(text)),
                    RANGES[name],
                )
            )
        elif name == "pattern" and (
            len(text) > MAX_TEXT_CHARS or any(_not_a_count(part) for part in re.split(r"[-,/ ]+", text) if part)
        ):
            problems.append(
                ConstraintProblem(
                    name,
                    text[:20],
                    f"must be {RANGES[name]}, got " + (f"{len(text):,} characters" if len(text) > 24 else repr(text)),
                    RANGES[name],
                )
            )
        elif len(text) > MAX_TEXT_CHARS:
            problems.append(
                ConstraintProblem(
                    name,
                    text[:20],
                    f"must be {RANGES.get(name, 'shorter')}, got {len(text):,} characters",
                    RANGES.get(name, ""),
                )
            )
    return problems


def _not_a_count(text: str) -> bool:
    """True for text that looks like a whole number but is not one ``int()`` can safely take: too
    many digits, non-ASCII digits ("²"), doubled signs. Other text is left to the field's checks."""
    return not _COUNT.fullmatch(text) and (len(text) > 6 or text.lstrip("+-").isdigit())


def shown_value(name: str, value: object) -> object:
    """A decoding control's value as its field holds it (lists and biases as one line of text)."""
    spec = FIELDS[name]
    if spec.kind is bool:
        return SWITCH[bool(value)] if isinstance(value, bool) else value
    if spec.textual and not isinstance(value, str):
        return text_form(name, value)
    return value


def field_placeholder(spec: FieldSpec) -> str:
    if spec.optional:
        return "random"
    if spec.kind is dict:
        return "off · 사랑=-2|그대=1"
    if spec.kind is tuple:
        return "off · 끝|\\n\\n"
    return spec.describe_range()


def field_choices(spec: FieldSpec) -> tuple[str, ...] | None:
    return SWITCH if spec.kind is bool else spec.choices


def restore_settings(base: DecodingSettings, saved: dict[str, object]) -> DecodingSettings:
    """``saved`` (a draft's decoding controls) over ``base``: every field that is valid on its own
    is kept, one that is not (another version's field, a value out of range) is left at
    ``base``'s, so a bad field never loses the rest."""
    known = {k: v for k, v in saved.items() if k in FIELDS}
    try:
        return DecodingSettings.from_dict(known, base=base)
    except SettingsError as exc:
        bad = {p.field for p in exc.problems}
    try:
        return DecodingSettings.from_dict({k: v for k, v in known.items() if k not in bad}, base=base)
    except SettingsError:  # a rule across fields (min_length > max_length): the preset as it is
        return base


def problem_text(problem: FieldProblem) -> str:
    """A settings ``Problem`` or a ``ConstraintProblem`` as shown under its field."""
    spec = FIELDS.get(problem.field)
    valid = spec.describe_range() if spec is not None else getattr(problem, "valid", "")
    if not valid or "must be" in problem.message:
        return problem.message
    return f"{problem.message} (valid: {valid})"
