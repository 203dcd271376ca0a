"""What each vocabulary token adds to a lyric line, as tensors, and the masks built from them.

A constraint step must cost a few vector operations, not a Python loop over 51,200 tokens, so
every token is profiled once per tokenizer (cached) and the per-step masks are assembled from
the profile and cached per line state:

* ``count``: syllables of the token's text by ``count_syllables`` (before any line break);
* ``tail_medial``/``tail_final``: raw jamo indices of its last three Hangul syllables, last
  first (-1 where it has fewer);
* flags: ``exact`` (the token's effect on the line is known from the token alone: no U+FFFD,
  i.e. no partial UTF-8 bytes of a byte-level vocabulary, and no conjoining jamo, which NFC
  could merge into the neighbouring syllable), ``additive`` (no digits or Latin letters, whose
  count depends on the neighbouring tokens: "2"+"4" reads 이십사, and no Han characters, kana
  or bare jamo, which are sung but not counted, and no brackets or symbols), ``has_break``,
  ``break_clean`` (one break, only spaces after it: a stanza break ``\n\n`` is not a line end
  under a constraint, so constrained lines come out one a line), ``starts_space``, ``special``;
* ``word_break``: the token ends the word before it: its text starts with whitespace (a space,
  ``▁``, a line break) or punctuation, or it is the end token. What the whole-word rule of
  ``kolyric.engine.lyric.spec`` sums the model's probability over.

A token's text is taken *in context*: decoded after a one-syllable reference token, so a
metaspace ``▁사랑`` reads " 사랑" and a byte-level ``Ġ`` reads " ".
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kolyric.korean.hangul import SYLLABLE_FIRST, SYLLABLE_LAST, count_syllables
from kolyric.korean.rhyme import FINAL_SOUND, GLUE_PREFIXES, MEDIAL_FAMILY, glue_step, rhyme_syllables

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

MAX_LINE_SYLLABLES = 40
TAIL = 3  # syllables of a token's ending kept (the most a rhyme compares)
_BREAK_RE = re.compile(r"[\r\n]")
# Characters a singer voices that the syllable count cannot see: digits and Latin letters
# (whose reading depends on their neighbours), Han characters (八 is sung 팔), kana, and bare
# jamo (ㅋㅋ). Under a count they would make the count a lie, so they are never chosen there.
_NON_ADDITIVE_RE = re.compile(
    r"[0-9A-Za-z\uff10-\uff19\u3040-\u30ff\u3131-\u318e\u3400-\u4dbf\u4e00-\u9fff"
    r"\uf900-\ufaff\uff21-\uff3a\uff41-\uff5a]"
)
# Brackets and symbols are neither sung nor counted: under a count they are glosses and
# debris ("恨(한)", "≥", "_") that let a line reach its count without words.
_UNSUNG_CATEGORIES = frozenset({"Ps", "Pe", "Pc", "Sm", "Sc", "Sk", "So"})
_CONJOINING_RE = re.compile(r"[\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7ff]")

Key = tuple[tuple[int, int], ...]
"""A rhyme target: per syllable, oldest first, (medial class, final class or -1 when not strict)."""


@dataclass
class VocabProfile:
    """Per-token tensors over the model's output vocabulary (ids past the tokenizer: unusable)."""

    size: int
    eos_id: int
    texts: list[str]
    count: torch.Tensor  # int64 [V]
    hangul: torch.Tensor  # int64 [V] Hangul syllables before any break
    tail_medial: torch.Tensor  # int64 [V, 3], last syllable first, -1 padded
    tail_final: torch.Tensor  # int64 [V, 3]
    exact: torch.Tensor
    additive: torch.Tensor
    has_break: torch.Tensor
    break_clean: torch.Tensor
    starts_space: torch.Tensor
    special: torch.Tensor
    word_break: torch.Tensor
    glue_next: torch.Tensor  # int64 [V, 3]: the line's glue state after the token, per state before
    stray: torch.Tensor  # bool [3, V]: the token glues a stray fragment on (``kolyric.korean.rhyme``)
    _banks: dict = field(default_factory=dict, repr=False)
    _lists: dict | None = field(default=None, repr=False)

    @property
    def has_newline_token(self) -> bool:
        """Whether some token is a bare line break (nothing but whitespace around it)."""
        return bool((self.pure_breaks()).any())

    def pure_breaks(self) -> torch.Tensor:
        return self.exact & ~self.special & self.has_break & self.break_clean & (self.hangul == 0) & (self.count == 0)

    def masks(self, strict: bool, families: bool, newline: bool, device: str = "cpu") -> MaskBank:
        """The (cached) mask builder for one rhyme comparison, line-end kind and device."""
        key = (strict, families, newline, str(device))
        with _CACHE_LOCK:
            bank = self._banks.get(key)
            if bank is None:
                bank = self._banks[key] = MaskBank(self, strict, families, newline, device)
        return bank

    def lists(self) -> dict[str, list]:
        """The per-token values as Python lists, for the per-row bookkeeping (built once)."""
        if self._lists is None:
            self._lists = {
                "count": self.count.tolist(),
                "hangul": self.hangul.tolist(),
                "medial": self.tail_medial.tolist(),
                "final": self.tail_final.tolist(),
                "has_break": self.has_break.tolist(),
                "glue": self.glue_next.tolist(),
            }
        return self._lists


_CACHE: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[int, VocabProfile]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def profile_for(tokenizer: PreTrainedTokenizerBase, size: int | None = None) -> VocabProfile:
    """The profile of ``tokenizer`` padded to ``size`` entries (the model's output width), cached."""
    size = int(size or len(tokenizer))
    with _CACHE_LOCK:
        per = _CACHE.setdefault(tokenizer, {})
        if size not in per:
            per[size] = build_profile(tokenizer, size)
        return per[size]


def token_texts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Each token's text as it reads after a one-syllable token (keeps its leading space)."""
    n = len(tokenizer)
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    backend = getattr(tokenizer, "backend_tokenizer", None)

    def decode_all(seqs: list[list[int]]) -> list[str]:
        if backend is not None:  # the Rust decoder directly: 51,200 short decodes in a fraction of a second
            return backend.decode_batch(seqs, skip_special_tokens=False)
        return tokenizer.batch_decode(seqs, **kwargs)

    for ch in ("가", "다", "a", "."):
        ref = tokenizer.encode(ch, add_special_tokens=False)
        if len(ref) == 1 and tokenizer.decode(ref, **kwargs) == ch:
            pairs = decode_all([[ref[0], i] for i in range(n)])
            return [p[len(ch) :] if p.startswith(ch) else tokenizer.decode([i], **kwargs) for i, p in enumerate(pairs)]
    return decode_all([[i] for i in range(n)])  # no reference token: each text alone


def build_profile(tokenizer: PreTrainedTokenizerBase, size: int) -> VocabProfile:
    import torch

    texts = token_texts(tokenizer)[:size]
    specials = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if getattr(t, "special", True)
    }
    rows = [_analyse(t) for t in texts]
    rows += [(0, 0, (-1,) * TAIL, (-1,) * TAIL, False, False, False, False, False)] * (size - len(rows))
    count, hangul, med, fin, exact, additive, brk, clean, space = zip(*rows)
    special = torch.zeros(size, dtype=torch.bool)
    special[[i for i in specials if i < size]] = True
    special[len(texts) :] = True  # padding rows of a model wider than its tokenizer
    eos = tokenizer.eos_token_id
    word_break = torch.tensor([_ends_word(t) for t in texts] + [False] * (size - len(texts))) & ~special
    if eos is not None and 0 <= eos < size:
        word_break[eos] = True
    glue = [[glue_step(s, _BREAK_RE.split(t, maxsplit=1)[0]) for s in range(len(GLUE_PREFIXES))] for t in texts]
    glue += [[(0, False)] * len(GLUE_PREFIXES)] * (size - len(texts))
    return VocabProfile(
        size=size,
        eos_id=int(eos) if eos is not None else -1,
        texts=texts + [""] * (size - len(texts)),
        count=torch.tensor(count, dtype=torch.long),
        hangul=torch.tensor(hangul, dtype=torch.long),
        tail_medial=torch.tensor(med, dtype=torch.long),
        tail_final=torch.tensor(fin, dtype=torch.long),
        exact=torch.tensor(exact) & ~special,
        additive=torch.tensor(additive),
        has_break=torch.tensor(brk),
        break_clean=torch.tensor(clean),
        starts_space=torch.tensor(space),
        special=special,
        word_break=word_break,
        glue_next=torch.tensor([[s for s, _ in row] for row in glue], dtype=torch.long),
        stray=torch.tensor([[row[s][1] for row in glue] for s in range(len(GLUE_PREFIXES))]) & ~special,
    )


def _ends_word(text: str) -> bool:
    """Whether a token reading ``text`` (in context) ends the word before it."""
    first = text[:1]
    return bool(first) and (first.isspace() or unicodedata.category(first).startswith("P"))


def _analyse(text: str) -> tuple:
    """(count, hangul, tail medials, tail finals, exact, additive, has_break, break_clean, starts_space)."""
    brk = _BREAK_RE.search(text)
    before = text[: brk.start()] if brk else text
    after = text[brk.end() :] if brk else ""
    if after.startswith("\n") and text[brk.start()] == "\r":
        after = after[1:]  # \r\n is one break
    # a line may end only with \n (or \r\n) followed by nothing but spaces: one line break. A
    # stanza break (\n\n) is not used inside constrained lines, so they come out one a line.
    clean = (
        brk is not None
        and (text[brk.start()] == "\n" or text[brk.start() : brk.end() + 1] == "\r\n")
        and not _BREAK_RE.search(after)
        and not after.strip()
    )
    if not unicodedata.is_normalized("NFC", before):
        before = unicodedata.normalize("NFC", before)
    syllables = [ord(c) - SYLLABLE_FIRST for c in before if SYLLABLE_FIRST <= ord(c) <= SYLLABLE_LAST]
    tail = syllables[::-1][:TAIL]
    med = tuple((s % 588) // 28 for s in tail) + (-1,) * (TAIL - len(tail))
    fin = tuple(s % 28 for s in tail) + (-1,) * (TAIL - len(tail))
    exact = "\ufffd" not in text and not _CONJOINING_RE.search(text)
    additive = not _NON_ADDITIVE_RE.search(text) and not any(
        unicodedata.category(c) in _UNSUNG_CATEGORIES for c in text
    )
    count = len(syllables) if additive else count_syllables(before)  # no digits or Latin: Hangul only
    return (count, len(syllables), med, fin, exact, additive, brk is not None, clean, text[:1].isspace())


def key_parts(syllables: str, strict: bool, families: bool) -> Key:
    """The comparison key of some Hangul syllables (oldest first)."""
    parts = []
    for ch in syllables:
        index = ord(ch) - SYLLABLE_FIRST
        parts.append(class_of((index % 588) // 28, index % 28, strict, families))
    return tuple(parts)


def raw_tail(text: str) -> tuple[tuple[int, int], ...]:
    """Raw (medial, final) of the text's last ``TAIL`` rhyme syllables (``rhyme_syllables``), oldest first."""
    out = []
    for ch in rhyme_syllables(text)[-TAIL:]:
        index = ord(ch) - SYLLABLE_FIRST
        out.append(((index % 588) // 28, index % 28))
    return tuple(out)


def class_of(medial: int, final: int, strict: bool, families: bool) -> tuple[int, int]:
    m = MEDIAL_FAMILY[medial] if families else medial
    f = (FINAL_SOUND[final] if families else final) if strict else -1
    return (m, f)


class MaskBank:
    """Boolean masks over the vocabulary for each line state, built with vector ops and cached.

    Counted lines (a syllable target): ``counted(key, r)`` are the tokens allowed with ``r``
    syllables left: they must not overshoot, must leave a remainder that can still be filled
    (a small dynamic programme over 0..40 per rhyme key), and any of their syllables that land
    in the last ``len(key)`` positions must match the key there. A line-break token may finish
    the line when its syllables before the break make exactly ``r``.
    """

    def __init__(self, profile: VocabProfile, strict: bool, families: bool, newline: bool, device: str = "cpu"):
        import torch

        self.size = profile.size
        self.strict, self.families, self.newline = strict, families, newline
        self.device = torch.device(device)
        med_lut = torch.tensor([-1] + [MEDIAL_FAMILY[i] if families else i for i in range(21)])
        fin_lut = torch.tensor([-1] + [FINAL_SOUND[i] if families else i for i in range(28)])
        to = self.device
        self.med = med_lut[profile.tail_medial + 1].to(to)
        self.fin = (fin_lut[profile.tail_final + 1] if strict else torch.full_like(profile.tail_final, -1)).to(to)
        self.cnt = profile.count.to(to)
        self.hangul = profile.hangul.to(to)
        self.starts_space = profile.starts_space.to(to)
        usable = profile.exact & ~profile.special
        self.mid_counted = (usable & profile.additive & ~profile.has_break).to(to)
        self.break_counted = (usable & profile.additive & profile.has_break & profile.break_clean).to(to)
        self.mid_free = (usable & ~profile.has_break).to(to)
        self.break_free = (usable & profile.has_break & profile.break_clean).to(to)
        self.pure_breaks = profile.pure_breaks().to(to)
        self.unstray = (~profile.stray).to(to)  # [3, V]
        self.unglues = (profile.glue_next[:, 2] != 2).to(to)  # a space after a clause mark
        self._unglued: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.eos = torch.zeros(profile.size, dtype=torch.bool, device=to)
        if 0 <= profile.eos_id < profile.size:
            self.eos[profile.eos_id] = True
        self.last_code = self.med[:, 0] * 32 + self.fin[:, 0] + 1  # the last syllable's class as one int
        self._counted: dict[tuple, tuple[torch.Tensor, list[bool]]] = {}
        self._cache: dict[tuple, torch.Tensor] = {}
        self._lock = threading.Lock()

    # -- rhyme matching ------------------------------------------------------------------------
    def _tail_match(self, key: Key, offset: int, z: torch.Tensor) -> torch.Tensor:
        """Tokens whose last ``z`` syllables (a tensor, per token) equal the key's syllables ending
        at index ``offset``."""
        ok = None
        for k in range(min(offset + 1, TAIL)):
            m, f = key[offset - k]
            hit = (self.med[:, k] == m) & (self.fin[:, k] == f) | (z <= k)
            ok = hit if ok is None else ok & hit
        return ok if ok is not None else z >= 0

    def ends_in(self, key: Key) -> bool:
        """Whether any usable token ends in the key's last syllable (a quick impossibility check)."""
        m, f = key[-1]
        return bool(
            self.memo(
                ("ends_in", key[-1]),
                lambda: (self.mid_free & (self.hangul > 0) & (self.med[:, 0] == m) & (self.fin[:, 0] == f)).any(),
            )
        )

    # -- counted lines -------------------------------------------------------------------------
    def _avoided(self, avoid: frozenset) -> torch.Tensor:
        """Tokens whose last syllable's class is one of ``avoid``."""
        import torch

        codes = torch.tensor([m * 32 + f + 1 for m, f in avoid], device=self.device, dtype=torch.long)
        return torch.isin(self.last_code, codes) & (self.hangul > 0)

    def _counted_bank(self, key: Key | None, avoid: frozenset, upto: int) -> tuple[list, list[bool]]:
        """Masks for 0..upto syllables left, extended on demand: ``masks[r]``, ``feasible[r]``."""
        import torch

        with self._lock:
            found = self._counted.get((key, avoid))
            if found is None:
                if len(self._counted) > 256:  # bounded; rebuilt on demand
                    self._counted.clear()
                found = self._counted[(key, avoid)] = ([None], [True], self._zones(key, avoid))
            masks, feasible, zones = found
            cnt = self.cnt
            for r in range(len(masks), upto + 1):
                counts = [c for c in range(1, r + 1) if feasible[r - c]]  # leave a remainder that can be filled
                fits = (cnt <= r) if len(counts) == r else torch.isin(cnt, torch.tensor(counts, device=self.device))
                for d, zone in enumerate(zones):  # tokens ending d syllables before the line's end
                    fits = fits & ~((cnt == r - d) & ~zone)
                step = self.mid_counted & (cnt > 0) & fits
                end = self.break_counted & fits & (cnt == r) if self.newline else None
                feasible.append(bool(step.any()) or (end is not None and bool(end.any())))
                mask = step | end if end is not None else step
                if feasible[r]:  # zero-syllable tokens (spaces, punctuation) wherever the line can still end
                    mask = mask | (self.mid_counted & (cnt == 0))
                masks.append(mask)
            return masks, feasible

    def _zones(self, key: Key | None, avoid: frozenset) -> list:
        """zones[d]: tokens allowed to end ``d`` syllables before the line's end (d < len(key)):
        their syllables inside the last len(key) positions match the key there."""

        if key:
            n = len(key)
            return [self._tail_match(key, n - 1 - d, self.cnt.clamp(max=n - d)) for d in range(n)]
        if avoid:  # a new rhyme group must not end like the others
            return [~self._avoided(avoid)]
        return []

    def counted(self, key: Key | None, r: int, zero_ok: bool = True, avoid: frozenset = frozenset()) -> torch.Tensor:
        """Tokens allowed on a counted line with ``r`` (1..40) syllables left, ending on ``key``
        (or, with no key, on a last syllable of none of the classes in ``avoid``)."""
        masks, _ = self._counted_bank(key, avoid, r)
        if zero_ok:
            return masks[r]
        return self.memo(("nozero", key, avoid, r), lambda: masks[r] & (self.cnt > 0))

    def spaced(self, key: Key | None, r: int, avoid: frozenset = frozenset()) -> torch.Tensor:
        """``counted`` past the zero-syllable run's limit, right after a clause mark: a token with
        syllables, or one that starts the next word (Hangul may not be glued on there)."""
        masks, _ = self._counted_bank(key, avoid, r)
        return self.memo(("spaced", key, avoid, r), lambda: masks[r] & ((self.cnt > 0) | self.unglues))

    def feasible(self, key: Key | None, r: int, avoid: frozenset = frozenset()) -> bool:
        """Whether ``r`` syllables ending in ``key`` can be written with this vocabulary."""
        return 0 <= r <= MAX_LINE_SYLLABLES and self._counted_bank(key, avoid, r)[1][r]

    # -- line ends -------------------------------------------------------------------------------
    def enders(self, last: bool) -> torch.Tensor:
        """A finished line's end: a bare line break (and, after the last line, the end token)."""

        def build() -> torch.Tensor:
            out = self.pure_breaks if self.newline else self.eos.clone().fill_(False)
            return out | self.eos if last else out

        return self.memo(("enders", last), build)

    def boundary(self, first: torch.Tensor, signature: tuple) -> torch.Tensor:
        """No newline token: the next line starts at a word boundary, with a token allowed to start
        it (``first``, memoised under ``signature``)."""
        return self.memo(("boundary", signature), lambda: first & self.starts_space)

    def free(
        self,
        key: Key | None,
        bits: tuple[bool, ...],
        need: int,
        tail_len: int,
        last: bool,
        avoid: frozenset = frozenset(),
        row_last: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Tokens allowed on a line with no syllable target: any exact token, and a line end only
        where the line's last ``len(key)`` syllables rhyme (``bits[m]``: the line's last m
        syllables equal the key's first m; with no key, its last syllable ``row_last`` is none
        of ``avoid``) and the line has at least ``need`` syllables."""
        import torch

        avoid = avoid if not key else frozenset()

        def build() -> torch.Tensor:
            n = len(key) if key else 0
            line_ok = tail_len >= need and (not key or bits[n]) and row_last not in avoid
            out = self.mid_free.clone()
            if self.newline:
                hp = self.hangul
                enough = (hp + tail_len) >= need
                if key:
                    table = torch.tensor(bits, dtype=torch.bool, device=self.device)
                    z = hp.clamp(max=n)
                    row_ok = table[(n - hp).clamp(0, n)]
                    enough &= self._tail_match(key, n - 1, z) & row_ok
                elif avoid:
                    enough &= ~self._avoided(avoid)
                out |= self.break_free & enough & ((hp > 0) | line_ok)
            if last and line_ok:
                out |= self.eos
            return out

        return self.memo(
            ("free", key, bits, need, min(tail_len, TAIL), last, avoid, row_last if avoid else None), build
        )

    def unglued(self, mask: torch.Tensor, glue: int) -> torch.Tensor:
        """``mask`` without the tokens that would glue a stray fragment onto a line in glue state
        ``glue`` (memoised; the entry holds the mask itself, so its id stays unique)."""
        with self._lock:
            found = self._unglued.get((id(mask), glue))
        if found is None or found[0] is not mask:
            found = (mask, mask & self.unstray[glue])
            with self._lock:
                if len(self._unglued) > 4096:
                    self._unglued.clear()
                self._unglued[(id(mask), glue)] = found
        return found[1]

    def memo(self, key: tuple, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        with self._lock:
            found = self._cache.get(key)
        if found is None:
            found = build()
            with self._lock:
                if len(self._cache) > 4096:  # bounded: drop everything (rebuilt on demand)
                    self._cache.clear()
                self._cache[key] = found
        return found
