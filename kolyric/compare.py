"""Compare presets: one prompt, one seed, several presets, each run as a plain single run would be.

The tutorial kolyric comes from teaches decoding by running one prompt under each strategy
(greedy, beam 3, top-k 50, top-p 0.92, temperature 0.01 and 1.5, repetition 1.5, combined) and
reading the outputs side by side. ``compare_settings`` builds each preset's settings with the
same overrides (seed, max_length, ...), exactly as ``kolyric generate --preset NAME`` with those
flags would, so each output equals that single run's; ``run_compare`` runs them in turn on one
generator. Used by ``kolyric generate --compare`` and the playground's compare view.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kolyric.engine.settings import PRESETS, DecodingSettings, Problem, SettingsError, preset

if TYPE_CHECKING:
    from kolyric.engine.results import GenerationRequest, GenerationResult
    from kolyric.engine.stream import Generator

TUTORIAL_PRESETS = (
    "greedy",
    "beam-3",
    "top-k-50",
    "top-p-0.92",
    "temperature-0.01",
    "temperature-1.5",
    "repetition-1.5",
    "combined",
)
MAX_COMPARED = 12


def parse_names(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """ "greedy,top-p-0.92" (or a list) as preset names; empty: the tutorial's runs. SettingsError
    naming ``compare`` for an unknown name, a repeat or too many."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return TUTORIAL_PRESETS
    names = [n.strip().lower() for n in (raw.split(",") if isinstance(raw, str) else raw) if n.strip()]
    problems = [
        Problem("compare", name, f"unknown preset; one of {', '.join(PRESETS)}")
        for name in names
        if name not in PRESETS
    ]
    if len(set(names)) != len(names):
        problems.append(Problem("compare", ",".join(names), "names a preset twice"))
    if not 1 <= len(names) <= MAX_COMPARED:
        problems.append(Problem("compare", ",".join(names), f"must name 1 to {MAX_COMPARED} presets"))
    if problems:
        raise SettingsError(problems)
    return tuple(names)


def compare_settings(names: Sequence[str], overrides: Mapping[str, Any]) -> list[tuple[str, DecodingSettings]]:
    """Each preset's settings with ``overrides`` applied, as ``preset(name, **overrides)``."""
    return [(name, preset(name, **overrides)) for name in names]


def preset_title(name: str, settings: DecodingSettings) -> str:
    """A card's title: the preset and what it sets ("top-p-0.92 · sample, top_p 0.92")."""
    values = settings.to_dict()
    own = ", ".join(
        f"{key} {values[key]:g}" if isinstance(values[key], float) else f"{key} {values[key]}"
        for key in PRESETS.get(name, {})
        if key != "strategy" and key in values
    )
    return f"{name} · {settings.strategy}" + (f", {own}" if own else "")


@dataclass(frozen=True)
class Compared:
    name: str
    title: str
    request: GenerationRequest
    result: GenerationResult


def run_compare(
    generator: Generator, request: GenerationRequest, names: Sequence[str], overrides: Mapping[str, Any]
) -> Iterator[Compared]:
    """Run ``request`` under each preset in turn; yields each as it finishes."""
    for name, settings in compare_settings(names, overrides):
        one = replace(request, settings=settings)
        yield Compared(name, preset_title(name, settings), one, generator.generate(one))
