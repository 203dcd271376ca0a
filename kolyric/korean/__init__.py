"""Korean text analysis: jamo decomposition, syllable counts, rhyme, and draft sections.

Pure Python with no heavy imports, so the app, the CLI and the generation processors
can all use it cheaply.  The counting rule is documented in ``kolyric.korean.hangul``,
the rhyme rule in ``kolyric.korean.rhyme``, sections in ``kolyric.korean.sections``.
"""

from kolyric.korean.hangul import (
    Jamo,
    count_syllables,
    decompose,
    is_hangul_syllable,
    number_reading,
)
from kolyric.korean.rhyme import (
    RhymeOptions,
    family_label,
    group_rhymes,
    last_syllables,
    own_vowels,
    rhyme_key,
    rhyme_label,
    rhyme_scheme,
    rhyme_syllables,
    rhymes_with,
    syllable_profile,
)
from kolyric.korean.sections import Analysis, Section, analyse, is_header, parse_sections

__all__ = [
    "Analysis",
    "Jamo",
    "RhymeOptions",
    "Section",
    "analyse",
    "count_syllables",
    "decompose",
    "family_label",
    "group_rhymes",
    "is_hangul_syllable",
    "is_header",
    "last_syllables",
    "number_reading",
    "own_vowels",
    "parse_sections",
    "rhyme_key",
    "rhyme_label",
    "rhyme_scheme",
    "rhyme_syllables",
    "rhymes_with",
    "syllable_profile",
]
