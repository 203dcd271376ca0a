"""The running side of lyric constraints: each row's line state, its masks, and the report.

A row's state (which line, syllables so far, its last syllables, the rhymes its finished lines
set) is a pure function of the tokens generated so far, so it is keyed by that token sequence,
not by the row's index: beam search reorders its beams every step, and a state derived from the
sequence itself cannot be mixed up. Each step extends the parent sequence's state by one token
(the parents are the previous step's sequences, kept; anything else is replayed from the root).
The report replays the final sequence with the same masks, so "satisfied" means every token was
allowed; then each line is checked again from its text with ``count_syllables``/``rhyme_key``,
and against the whole-word rule with the probabilities measured while it was written.

The whole-word rule's bookkeeping lives here too (the search that takes a token back is
``kolyric.engine.lyric.lookahead``): a row *awaits its word end* when its last token completed the
current line's count; the next step's distribution then gives the rule's measure
(``word_end_mass``), recorded per token sequence (``word_masses``) for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from kolyric.engine.lyric.explain import ConstraintExplanations
from kolyric.engine.lyric.plan import Row, plan_lines
from kolyric.engine.lyric.processor import ConstraintLogitsProcessor
from kolyric.engine.lyric.report import ConstraintReport, LineReport, check_lines, key_text
from kolyric.engine.lyric.spec import MAX_ZERO_RUN, LyricConstraints
from kolyric.engine.lyric.vocab_profile import TAIL, Key, class_of, profile_for, raw_tail
from kolyric.engine.lyric.word_ends import WordEndRule
from kolyric.engine.prompt import clean_output
from kolyric.korean.hangul import count_syllables
from kolyric.korean.rhyme import glue_state

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class ConstraintState(WordEndRule, ConstraintExplanations):
    """What the decoding loop consults (see kolyric.engine.stream): ``processor``, ``advance``,
    ``row_finished`` and ``report``."""

    def __init__(
        self,
        spec: LyricConstraints,
        tokenizer: PreTrainedTokenizerBase,
        *,
        vocab_size: int | None,
        separator: str,
        window: int,
        prompt_len: int,
        prompt: str = "",
        context: Sequence[str] = (),
        max_length: int | None = None,
    ):
        """``vocab_size``: the model's output width (None: the tokenizer's); ``separator``: how
        the prompt joins draft lines (``prompt.line_separator``); ``window``: the model's context
        window; ``prompt``/``context``: the request's line and earlier draft lines."""
        self.spec = spec
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.window = window
        self.profile = profile_for(tokenizer, vocab_size)
        self.lists = self.profile.lists()
        self.eos = self.profile.eos_id
        self.newline = separator == "\n" and self.profile.has_newline_token
        self.whole_words = bool(spec.whole_words) and spec.targets is not None
        # masks stay on the CPU, where the per-row checks read them; the processor keeps a copy of
        # each one it uses on the scores' device
        self.bank = self.profile.masks(spec.strict, spec.families, self.newline)
        self.n = spec.rhyme_syllables
        self.counted = spec.targets is not None
        self.prompt = prompt.strip()
        context = [c.strip() for c in context if c.strip()]
        self.max_length = max_length
        """The new-token limit the report names when it runs out (the loop updates it on a live change)."""
        self.notes: list[str] = []
        self.lines = plan_lines(spec, self.prompt, context, self.notes)
        self.root = self._initial(context)
        self._states: dict[tuple, Row] = {(): self.root}
        self._current: list[Row] = []
        self._gens: list[tuple[int, ...]] = []
        self.failures: dict[tuple, str] = {}
        self.word_masses: dict[tuple[int, ...], float] = {}
        """The whole-word measure after each line-completing token sequence that was looked at."""
        self._break_vectors: dict[tuple, torch.Tensor] = {}
        self.processor = ConstraintLogitsProcessor(self)

    def _initial(self, context: list[str]) -> Row:
        spec = self.spec
        if spec.mode == "continue" and self.prompt:
            row = Row(
                line=0,
                count=count_syllables(self.prompt),
                tail=raw_tail(self.prompt),
                glue=glue_state(self.prompt),
                starts=(0,),
            )
        elif self.prompt or context:
            row = Row(line=-1)  # the line before is closed first (continue mode with nothing typed: the draft's)
        else:
            row = Row(line=0, starts=(0,))
        return replace(row, broken=self._impossible(row))

    def _impossible(self, row: Row) -> str | None:
        """Why the constraints cannot be met with this vocabulary and prompt, before generating."""
        if not self.counted and len(self.lines) > 1 and not self.newline:
            return (
                "lines: this model's vocabulary has no newline token, so lines are told apart by their "
                "syllable counts; set syllables or pattern"
            )
        for j, line in enumerate(self.lines):
            if line.key is not None and not self.bank.ends_in(line.key):
                return f"line {j + 1}: no token in the vocabulary ends in a syllable rhyming {self._rhyme(line.key)}"
            if line.target is not None:
                left = line.target - (row.count if j == 0 else 0)
                if left < 0:
                    return (
                        f"line 1: the typed line already has {row.count} syllables, more than the {line.target} asked"
                    )
                if left > 0 and not self.bank.feasible(line.key, left):
                    return f"line {j + 1}: the vocabulary has no tokens that make {left} syllables" + (
                        f" ending on the rhyme {self._rhyme(line.key)}" if line.key else ""
                    )
        first = self.lines[0]
        if row.line == 0 and row.count and first.key and first.target is not None:
            typed_in_zone = row.count - (first.target - len(first.key))
            if typed_in_zone > 0 and not self._bits(row.tail, first.key)[min(typed_in_zone, len(first.key))]:
                return f"line 1: the typed syllables cannot end on the rhyme {self._rhyme(first.key)}"
        return None

    # -- masks -------------------------------------------------------------------------------------
    def _key(self, row: Row, j: int) -> Key | None:
        line = self.lines[j]
        if line.key is not None or line.group is None:
            return line.key
        return dict(row.keys).get(line.group)

    def _avoid(self, row: Row, j: int) -> frozenset:
        """A scheme group's first line must not end like the other groups (single-syllable rhymes:
        with 2-3 syllables, letters only bind lines together)."""
        line = self.lines[j]
        if self.n != 1 or line.group is None or line.key is not None or line.group in dict(row.keys):
            return frozenset()
        others = [ln.key for ln in self.lines if ln.key is not None and ln.group != line.group]
        others += [k for g, k in row.keys if g != line.group]
        return frozenset(k[-1] for k in others)

    def _bits(self, tail: tuple, key: Key | None) -> tuple[bool, ...]:
        """bits[m]: the line's last m syllables equal the key's first m."""
        if not key:
            return ()
        classes = tuple(class_of(m, f, self.spec.strict, self.spec.families) for m, f in tail)
        return tuple(m == 0 or (len(classes) >= m and classes[-m:] == key[:m]) for m in range(len(key) + 1))

    def _need(self, j: int) -> int:
        return self.n if self.lines[j].group else 1

    def _first(self, row: Row, j: int) -> torch.Tensor:
        """No newline token: tokens that may start line j (word starts)."""
        line, key, avoid = self.lines[j], self._key(row, j), self._avoid(row, j)
        last = j == len(self.lines) - 1
        if self.counted:
            first = self.bank.counted(key, line.target, avoid=avoid)
            return self.bank.boundary(first, ("c", key, avoid, line.target))
        need = self._need(j)
        first = self.bank.free(key, self._bits((), key), need, 0, last, avoid)
        return self.bank.boundary(first, ("f", key, avoid, need, last))

    def mask_of(self, row: Row) -> torch.Tensor:
        """The tokens allowed next (a bool tensor over the vocabulary; cached, never modified).
        No token may glue a stray fragment on (Hangul right after clause punctuation): a line's
        rhyme is never read from one (``kolyric.korean.rhyme``), so it could meet nothing."""
        bank = self.bank
        if row.broken or row.done or row.ended:
            return bank.eos
        j = row.line
        if j == -1:
            return bank.unglued(bank.enders(False) if self.newline else self._first(row, 0), 0)
        line, key, avoid = self.lines[j], self._key(row, j), self._avoid(row, j)
        last = j == len(self.lines) - 1
        if self.counted:
            left = line.target - row.count
            if left > 0:
                if row.glue == 2 and row.zero_run >= MAX_ZERO_RUN:  # a space may always follow a clause mark
                    return bank.unglued(bank.spaced(key, left, avoid), 2)
                return bank.unglued(bank.counted(key, left, row.zero_run < MAX_ZERO_RUN, avoid), row.glue)
            if self.newline:
                return bank.unglued(bank.enders(last), row.glue)
            return bank.eos if last else bank.unglued(self._first(row, j + 1), 0)
        row_last = class_of(*row.tail[-1], self.spec.strict, self.spec.families) if row.tail else None
        free = bank.free(key, self._bits(row.tail, key), self._need(j), len(row.tail), last, avoid, row_last)
        return bank.unglued(free, row.glue)

    # -- transitions -------------------------------------------------------------------------------
    def _finish_line(self, row: Row) -> Row:
        line = self.lines[row.line]
        if line.group and line.key is None and line.group not in dict(row.keys) and row.tail:
            learnt = tuple(class_of(m, f, self.spec.strict, self.spec.families) for m, f in row.tail[-self.n :])
            row = replace(row, keys=row.keys + ((line.group, learnt),))
        return row

    def _next_line(self, row: Row, start: int) -> Row:
        if row.line + 1 >= len(self.lines):
            return replace(row, done=True, end_pos=start)
        return replace(row, line=row.line + 1, count=0, tail=(), zero_run=0, glue=0, starts=row.starts + (start,))

    def step(self, row: Row, tid: int, pos: int, seq: Sequence[int]) -> Row:
        """The state after token ``tid`` at position ``pos`` of ``seq`` (the generated ids)."""
        new = self._step(row, tid, pos, seq)
        if not self.counted or new is row or new.broken:
            return new
        complete = (
            len(self.lines)
            if new.done
            else max(0, new.line + (new.line >= 0 and new.count == self.lines[new.line].target))
        )
        if len(new.word_ends) < complete:  # lines whose count this token completed
            ends = list(new.word_ends)
            while len(ends) < complete:
                mine = len(ends) == new.line and not new.done
                ends.append(pos if mine else -1)
            new = replace(new, word_ends=tuple(ends))
        return new

    def _step(self, row: Row, tid: int, pos: int, seq: Sequence[int]) -> Row:
        if row.ended:
            return row
        if tid == self.eos:
            if row.done or row.broken:
                return replace(row, ended=True)
            if bool(self.mask_of(row)[tid]):
                return replace(row, done=True, ended=True, end_pos=pos)
            return replace(row, broken=self._why(row, tid, pos, seq), ended=True, end_pos=pos)
        if row.done or row.broken:
            return row
        if not 0 <= tid < self.profile.size or not bool(self.mask_of(row)[tid]):
            return replace(row, broken=self._why(row, tid, pos, seq), end_pos=pos)
        lists = self.lists
        count, hangul = lists["count"][tid], lists["hangul"][tid]
        med, fin = lists["medial"][tid], lists["final"][tid]
        token_tail = tuple((med[k], fin[k]) for k in reversed(range(min(hangul, TAIL))))
        zero = 0 if count else 1
        glue = lists["glue"][tid]
        if row.line == -1:
            if self.newline:
                return replace(row, line=0, starts=(pos + 1,))
            return replace(row, line=0, count=count, tail=token_tail, zero_run=zero, starts=(pos,), glue=glue[0])
        line = self.lines[row.line]
        if self.counted and row.count == line.target:  # the line is complete: this token ends it
            row = self._finish_line(row)
            if self.newline:
                return self._next_line(row, pos + 1)
            row = self._next_line(row, pos)  # a word boundary: the token starts the next line
            return replace(row, count=count, tail=token_tail, zero_run=zero, glue=glue[0])
        row = replace(
            row,
            count=row.count + count,
            tail=(row.tail + token_tail)[-TAIL:],
            zero_run=row.zero_run + 1 if zero else 0,
            glue=glue[row.glue],
        )
        if lists["has_break"][tid]:
            return self._next_line(self._finish_line(row), pos + 1)
        return row

    def state_for(self, seq: tuple[int, ...]) -> Row:
        row = self._states.get(seq)
        if row is not None:
            return row
        k = len(seq) - 1
        while k > 0 and seq[:k] not in self._states:
            k -= 1
        row = self._states[seq[:k]] if k > 0 else self.root
        for pos in range(k, len(seq)):
            row = self.step(row, seq[pos], pos, seq)
        self._states[seq] = row
        return row

    def keep(self, seqs: list[tuple[int, ...]], rows: list[Row]) -> None:
        """Keep the states of these sequences and of the ones a token shorter: a step taken back
        (``kolyric.engine.lyric.lookahead``) and beam search's parents then extend a kept state."""
        longest = max((len(g) for g in seqs), default=0)
        kept = {g: r for g, r in self._states.items() if len(g) >= longest - 1}
        kept[()] = self.root
        kept.update(zip(seqs, rows))
        self._states = kept

    # -- the stream's view of the rows -----------------------------------------------------------
    def generated(self, i: int) -> tuple[int, ...]:
        """Row ``i``'s generated tokens at the last ``advance``."""
        return self._gens[i]

    def line_of(self, i: int) -> int:
        return self._current[i].line

    def boundary_starts(self, ids: Sequence[int]) -> set[int]:
        """Positions in ``ids`` where a line begins that no break token separates from the one
        before (``starts_line`` for a finished sequence)."""
        if self.newline:
            return set()
        out, row = set(), self.root
        for pos, tid in enumerate(ids):
            new = self.step(row, int(tid), pos, ids)
            if new.broken or new.ended:
                break
            if len(new.starts) > len(row.starts) and new.starts[-1] == pos and (new.line > 0 or row.line == -1):
                out.add(pos)
            row = new
        return out

    def starts_line(self, i: int) -> bool:
        """Whether row ``i``'s last token began a line that no break token separates from the one
        before (a vocabulary with no newline token: the stream shows the break)."""
        if self.newline or i >= len(self._current):
            return False
        row, length = self._current[i], len(self._gens[i])
        return (
            not row.broken
            and length > 0
            and bool(row.starts)
            and row.starts[-1] == length - 1
            and (row.line > 0 or self.root.line == -1)
        )

    # -- the decoding loop's hooks -------------------------------------------------------------------
    def advance(self, seqs: torch.Tensor) -> None:
        gens = [tuple(r) for r in seqs[:, self.prompt_len :].tolist()]
        rows = [self.state_for(g) for g in gens]
        self._current = rows
        self._gens = gens
        self.keep(gens, rows)

    def row_finished(self, i: int) -> bool:
        return i < len(self._current) and self._current[i].done and not self._current[i].ended

    def report(self, i: int, generated_ids: Sequence[int]) -> ConstraintReport:
        ids = [int(t) for t in generated_ids]
        row = self.root
        for pos, tid in enumerate(ids):
            row = self.step(row, tid, pos, ids)
            if row.ended:
                break
        return self._report(row, ids)

    def _report(self, row: Row, ids: list[int]) -> ConstraintReport:
        end = row.end_pos
        if end is None:
            end = ids.index(self.eos) if self.eos in ids else len(ids)
        starts = list(row.starts)
        segments = [ids[s:e] for s, e in zip(starts, starts[1:] + [end])]
        raw = [self.tokenizer.decode(seg, skip_special_tokens=False) for seg in segments]
        parts = [clean_output(r, self.tokenizer.unk_token) for r in raw]
        texts = list(parts)
        continuing = self.spec.mode == "continue" and bool(self.prompt)
        if continuing and texts:
            joiner = " " if self.prompt and raw[0][:1].isspace() else ""
            texts[0] = clean_output(self.prompt + joiner + parts[0], self.tokenizer.unk_token)
        complete = len(texts) if row.done else max(0, len(texts) - 1)
        keys = [key_text(line.key) for line in self.lines]
        checked = check_lines(
            texts[:complete],
            [ln.target for ln in self.lines][:complete],
            keys[:complete],
            [ln.group for ln in self.lines][:complete],
            self.spec.rhyme_options,
        )
        for j, line in enumerate(checked):
            self.check_word_end(line, row.word_ends[j] if j < len(row.word_ends) else -1, ids)
        for j in range(complete, len(texts)):
            checked.append(
                LineReport(
                    texts[j],
                    count_syllables(texts[j]),
                    self.lines[j].target,
                    None,
                    keys[j],
                    self.lines[j].group,
                    False,
                    "unfinished",
                )
            )
        reasons = []
        if row.broken:
            reasons.append(row.broken)
        elif not row.done:
            reasons.insert(0, f"stopped at {self._where(row)}: {self._stop_cause(len(ids))}")
        reasons += [f"line {j + 1}: {r.problem}" for j, r in enumerate(checked[:complete]) if not r.ok]
        satisfied = row.done and not row.broken and complete == len(self.lines) and all(r.ok for r in checked)
        report = ConstraintReport(
            satisfied,
            self.spec.describe(),
            reasons,
            checked,
            "newline" if self.newline else "word boundary",
            notes=list(self.notes),
        )
        if texts and not row.broken:  # a broken row's lines are not tracked past the break
            report.text = "\n".join(parts)
            head = texts[0] if continuing else "\n".join(([self.prompt] if self.prompt else []) + texts[:1])
            report.full_text = "\n".join([head] + texts[1:])
        return report


__all__ = ["ConstraintState"]
