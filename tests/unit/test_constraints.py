"""Lyric constraints without a model: validation and flags, the vocabulary profile, the masks
(against a brute-force search), and the state machine driven by random scores, with every
finished line re-checked from its text by ``count_syllables`` and ``rhyme_key``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from kolyric.cli.lyric_flags import add_arguments, from_arguments
from kolyric.engine.lyric.spec import ConstraintError, LyricConstraints, from_dict, parse_pattern, parse_scheme
from kolyric.engine.lyric.state import ConstraintState
from kolyric.engine.lyric.vocab_profile import MaskBank, build_profile, key_parts
from kolyric.korean.hangul import count_syllables
from kolyric.korean.rhyme import RhymeOptions, rhyme_key

# -- a vocabulary we control ---------------------------------------------------------------------
PIECES = [
    "</s>",
    "<unk>",
    "<pad>",
    "가",
    "나",
    "다",
    "고",
    "노",
    "랑",
    "요",
    "이",
    "꿈",
    "별",
    "해",
    "밤",
    "강",
    "산",
    " 사랑",
    " 가",
    " 해",
    " 나다",
    " 노래",
    " 꿈을",
    " 별이",
    " 바다",
    " 하늘",
    " 밤이",
    " 강물",
    "해요",
    "하늘",
    "바다",
    "사랑해",
    "노래야",
    "구름아",
    "!",
    ".",
    " ",
    "ㅋㅋ",
    "...",
    "24",
    "2",
    "4",
    "love",
    " baby",  # numbers and Latin: their count depends on neighbours
    "\ufffd",
    "사\ufffd",  # partial UTF-8 (byte-level)
    "\u1100",  # a conjoining jamo: NFC could merge it into its neighbour
]
NEWLINES = ["\n", "다\n", "요\n", "\n그"]


class FakeTokenizer:
    """Concatenating pieces is decoding; specials are </s> (eos), <unk>, <pad>."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces
        self.eos_token_id, self.unk_token_id, self.pad_token_id = 0, 1, 2
        self.bos_token_id = 0
        self.unk_token = "<unk>"
        self.all_special_ids = [0, 1, 2]
        self.added_tokens_decoder: dict = {}
        self.ids = {p: i for i, p in enumerate(pieces) if i > 2}

    def __len__(self) -> int:
        return len(self.pieces)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out, i = [], 0
        while i < len(text):
            for j in range(len(text), i, -1):
                if text[i:j] in self.ids:
                    out.append(self.ids[text[i:j]])
                    i = j
                    break
            else:
                out.append(self.unk_token_id)
                i += 1
        return out

    def decode(self, ids, skip_special_tokens: bool = False, **_) -> str:
        return "".join(self.pieces[i] for i in ids)

    def batch_decode(self, seqs, **kw) -> list[str]:
        return [self.decode(s, **kw) for s in seqs]


class FakeModel:
    device = torch.device("cpu")

    def __init__(self, size: int):
        self.size = size

    def get_output_embeddings(self):
        return SimpleNamespace(weight=torch.zeros(self.size, 1))


def fake_generator(newline: bool, extra_rows: int = 3):
    pieces = PIECES + (NEWLINES if newline else [])
    tok = FakeTokenizer(pieces)
    return SimpleNamespace(
        tokenizer=tok,
        model=FakeModel(len(pieces) + extra_rows),
        _separator="\n" if newline else " ",
        context_window=4096,
    )


def start_state(spec, gen, prompt_len, request=None):
    return ConstraintState(
        spec,
        gen.tokenizer,
        vocab_size=gen.model.size,
        separator=gen._separator,
        window=gen.context_window,
        prompt_len=prompt_len,
        prompt=request.prompt if request else "",
        context=request.context if request else (),
        max_length=request.settings.max_length if request else None,
    )


# -- validation and flags ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [
        ("syllables", 0),
        ("syllables", 41),
        ("syllables", "8"),
        ("syllables", True),
        ("lines", 0),
        ("lines", 17),
        ("rhyme_syllables", 0),
        ("rhyme_syllables", 4),
        ("pattern", "8-0-7"),
        ("pattern", "8-x"),
        ("pattern", "-".join(["8"] * 17)),
        ("scheme", "A1"),
        ("scheme", ""),
        ("scheme", "A" * 33),
        ("rhyme", "abc"),
        ("rhyme", ""),
        ("mode", "sideways"),
        ("strict", "yes"),
        ("families", 1),
    ],
)
def test_each_bad_value_names_its_field(field, value):
    with pytest.raises(ConstraintError) as info:
        LyricConstraints(**{field: value})
    assert field in {p.field for p in info.value.problems}
    assert str(info.value).startswith(f"{field}:") or f"; {field}:" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConstraintError) as info:
        LyricConstraints(syllables=0, lines=99, scheme="1", rhyme="x")
    assert {p.field for p in info.value.problems} == {"syllables", "lines", "scheme", "rhyme"}
    d = info.value.problems[0].to_dict()
    assert set(d) == {"field", "value", "message", "valid"} and d["valid"]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"syllables": 8, "pattern": "8-8"}, "pattern"),
        ({"lines": 3, "pattern": "8-8"}, "pattern"),
        ({"lines": 4, "scheme": "AB"}, "scheme"),
        ({"rhyme": "랑", "rhyme_syllables": 2}, "rhyme"),  # the target has one syllable
        ({"syllables": 2, "rhyme": "사랑해", "rhyme_syllables": 3}, "rhyme_syllables"),
    ],
)
def test_cross_field_rules(kwargs, field):
    with pytest.raises(ConstraintError) as info:
        LyricConstraints(**kwargs)
    assert [p.field for p in info.value.problems] == [field]


def test_parsing_and_derived_values():
    assert parse_pattern("8-8-7-9") == (8, 8, 7, 9) == parse_pattern([8, "8", 7, 9.0])
    assert parse_pattern("8, 8 / 7") == (8, 8, 7)
    assert parse_scheme("aabb") == "AABB" and parse_scheme("A-BX") == "AxBx"
    c = LyricConstraints(pattern="8-8-7-9", scheme="ABAB")
    assert c.pattern == (8, 8, 7, 9) and c.n_lines == 4 and c.targets == (8, 8, 7, 9)
    assert LyricConstraints(scheme="AABB").n_lines == 4 and LyricConstraints(scheme="AABB").targets is None
    assert LyricConstraints(syllables=6, lines=3).targets == (6, 6, 6)
    assert LyricConstraints(lines=2, scheme="AAAB").n_lines == 2  # the first letters are the draft's
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lines = 3
    assert "pattern 8-8-7-9" in c.describe() and "ABAB" in c.describe()


def test_from_dict_coerces_strings_and_rejects_unknown_fields():
    c = LyricConstraints.from_dict({"syllables": "8", "rhyme": "랑", "strict": "true", "pattern": None})
    assert (c.syllables, c.strict) == (8, True)
    with pytest.raises(ConstraintError) as info:
        LyricConstraints.from_dict({"syllables": "eight", "bogus": 1})
    assert {p.field for p in info.value.problems} == {"syllables", "bogus"}
    assert LyricConstraints.from_dict(c.to_dict()) == c
    assert from_dict({}) is None and from_dict({"strict": True, "mode": "continue"}) is None
    assert from_dict({"syllables": 8}) == LyricConstraints(syllables=8)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags():
    assert from_arguments(parse()) is None
    assert from_arguments(parse("--mode", "continue")) is None
    c = from_arguments(
        parse(
            "--syllables",
            "8",
            "--rhyme",
            "랑",
            "--lines",
            "4",
            "--scheme",
            "AABB",
            "--strict",
            "--rhyme-syllables",
            "1",
            "--no-families",
            "--mode",
            "continue",
        )
    )
    assert c == LyricConstraints(
        syllables=8, rhyme="랑", lines=4, scheme="AABB", strict=True, families=False, mode="continue"
    )
    assert from_arguments(parse("--pattern", "8-8-7-9")).targets == (8, 8, 7, 9)
    with pytest.raises(ValueError, match=r"syllables: must be an integer in \[1, 40\], got 'x'"):
        from_arguments(parse("--syllables", "x"))
    with pytest.raises(ValueError, match="strict: --strict needs --rhyme or --scheme"):
        from_arguments(parse("--strict"))
    with pytest.raises(ValueError, match="strict"):
        from_arguments(parse("--syllables", "8", "--strict"))


def test_whole_words_is_on_unless_asked_off():
    assert LyricConstraints(syllables=8).whole_words is True
    assert from_arguments(parse("--syllables", "8")).whole_words is True
    assert from_arguments(parse("--syllables", "8", "--no-whole-words")).whole_words is False
    with pytest.raises(ValueError, match="whole_words: --no-whole-words needs --syllables or --pattern"):
        from_arguments(parse("--no-whole-words"))
    assert LyricConstraints.from_dict({"syllables": "7", "whole_words": "false"}).whole_words is False
    assert LyricConstraints.from_dict(LyricConstraints(syllables=7, whole_words=False).to_dict()).whole_words is False
    with pytest.raises(ConstraintError, match="whole_words: must be true or false"):
        LyricConstraints.from_dict({"syllables": 7, "whole_words": "maybe"})


def test_the_length_budget_fits_the_lines():
    """Per counted line 1.5 tokens a syllable and its break, 32 tokens per uncounted line, and the
    prompt line's break: never less than one token per syllable plus the breaks."""
    assert LyricConstraints(syllables=8, lines=4).length_budget() == 2 + 4 * (12 + 3)
    assert LyricConstraints(pattern="7-5").length_budget() == 2 + (11 + 3) + (8 + 3)
    assert LyricConstraints(lines=4).length_budget() == 2 + 4 * 32
    for c in (LyricConstraints(syllables=40, lines=16), LyricConstraints(syllables=1)):
        assert c.length_budget() >= sum(c.targets) + len(c.targets) + 1


def test_the_module_imports_no_torch():
    code = "import sys, kolyric.engine.lyric.spec, kolyric.engine.lyric.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the vocabulary profile ----------------------------------------------------------------------
def test_profile_reads_each_token_in_context():
    gen = fake_generator(newline=True)
    p = build_profile(gen.tokenizer, len(gen.tokenizer) + 3)
    ids = gen.tokenizer.ids
    assert p.count[ids[" 사랑"]] == 2 and bool(p.starts_space[ids[" 사랑"]])
    assert p.tail_medial[ids[" 사랑"]].tolist() == [0, 0, -1]  # 랑 then 사: both ㅏ
    assert p.tail_final[ids[" 사랑"]].tolist() == [21, 0, -1]  # ㅇ, none
    assert not p.exact[ids["\ufffd"]] and not p.exact[ids["사\ufffd"]] and not p.exact[ids["\u1100"]]
    assert not p.additive[ids["24"]] and not p.additive[ids["love"]] and not p.additive[ids["ㅋㅋ"]]
    assert p.count[ids["ㅋㅋ"]] == 0 and p.count[ids["..."]] == 0
    assert p.has_break[ids["다\n"]] and p.break_clean[ids["다\n"]] and p.count[ids["다\n"]] == 1
    assert p.has_break[ids["\n그"]] and not p.break_clean[ids["\n그"]]
    assert p.special[0] and p.special[1] and p.special[-1]  # specials and rows past the tokenizer
    assert p.has_newline_token
    assert not build_profile(fake_generator(False).tokenizer, 60).has_newline_token


@pytest.mark.parametrize(
    "text, sung",
    [
        ("사랑", True),
        (" 사랑,", True),
        ("다.", True),
        ("!", True),
        ("'", True),
        ("\n", True),
        ("八", False),
        ("恨에", False),
        ("ㅋㅋ", False),
        ("ㅠ", False),
        ("あ", False),
        ("(", False),
        ("『", False),
        ("≥", False),
        ("_", False),
        ("★", False),
        ("$", False),
        ("24", False),
        ("Ｌ", False),
    ],
)
def test_under_a_count_only_what_is_counted_is_sung(text, sung):
    """Han characters (八 is sung 팔), kana, bare jamo, brackets and symbols would let a line reach
    its count with sounds the count cannot see: they are not additive, so never chosen there."""
    from kolyric.engine.lyric.vocab_profile import _analyse

    assert _analyse(text)[5] is sung


def test_profile_counts_agree_with_count_syllables_on_real_tokenizers(tiny_model_dir, tiny_bytelevel_dir):
    from transformers import AutoTokenizer

    for path in (tiny_model_dir, tiny_bytelevel_dir):
        tok = AutoTokenizer.from_pretrained(path)
        p = build_profile(tok, len(tok))
        usable = (p.exact & p.additive & ~p.special & ~p.has_break).nonzero().flatten().tolist()
        assert len(usable) > len(tok) // 3
        for i in usable:
            assert p.count[i] == count_syllables(tok.decode([i]))
        partial = [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
        assert all(not p.exact[i] for i in partial)


# -- masks, against a brute-force search ---------------------------------------------------------
def brute_allowed(bank_profile, tokens, key, r):
    """Tokens that start a way to write exactly r more syllables whose last len(key) are key."""
    n = len(key) if key else 0

    @functools.cache
    def can(left: int, zone: tuple) -> bool:  # zone: classes written from the token on (its last n)
        if left == 0:  # syllables before the token were checked when they were written
            return not key or zone[-n:] == key[n - len(zone[-n:]) :]
        return any(can(left - c, (zone + t)[-max(n, 1) :]) for c, t in tokens if 1 <= c <= left)

    out = set()
    for i, (c, t) in bank_profile.items():
        if c == 0:
            ok = can(r, ())
        else:
            ok = c <= r and can(r - c, t[-max(n, 1) :]) if key else c <= r and can(r - c, ())
        if ok:
            out.add(i)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "target,n,strict", [("랑", 1, False), ("사랑", 2, False), ("강", 1, True), ("노래야", 3, False)]
)
def test_counted_masks_match_a_brute_force_search(seed, target, n, strict):
    rng = random.Random(seed)
    syllables = "가나다랑강산사노래야요해밤별꿈"
    pieces = ["</s>", "<unk>", "<pad>", ".", " "]
    sparse = seed % 2 == 1  # no one-syllable tokens: some remainders cannot be filled
    while len(pieces) < (18 if sparse else 40):
        length = rng.choice([2, 3, 3] if sparse else [1, 2, 3, 4])
        word = "".join(rng.choice(syllables[:9] if sparse else syllables) for _ in range(length))
        pieces.append(rng.choice(["", " "]) + word)
    tok = FakeTokenizer(list(dict.fromkeys(pieces)))
    profile = build_profile(tok, len(tok))
    bank = MaskBank(profile, strict, True, newline=False)
    key = key_parts(target[-n:], strict, True)
    classes = {}
    for i in range(3, len(tok)):
        text = tok.pieces[i]
        syl = [ch for ch in text if "가" <= ch <= "힣"]
        classes[i] = (len(syl), key_parts("".join(syl), strict, True))
    tokens = tuple(set(classes.values()))
    for r in range(1, 9):
        got = set(bank.counted(key, r).nonzero().flatten().tolist())
        assert got == brute_allowed(classes, tokens, key, r), (r, target)
        got_free = set(bank.counted(None, r).nonzero().flatten().tolist())
        assert got_free == brute_allowed(classes, tokens, None, r)


def test_impossible_rhyme_and_avoided_rhymes():
    gen = fake_generator(newline=False)
    profile = build_profile(gen.tokenizer, len(gen.tokenizer))
    bank = MaskBank(profile, True, False, newline=False)
    assert not bank.ends_in(key_parts("뷁", True, False))
    assert not bank.feasible(key_parts("뷁", True, False), 3)
    plain = MaskBank(profile, False, True, newline=False)
    a = key_parts("랑", False, True)[-1]
    ids = gen.tokenizer.ids
    avoiding = plain.counted(None, 1, avoid=frozenset([a]))
    assert not avoiding[ids["가"]] and not avoiding[ids["랑"]] and avoiding[ids["고"]]
    assert plain.counted(None, 2, avoid=frozenset([a]))[ids["가"]]  # not at the end: fine


# -- the state machine, driven by random scores ------------------------------------------------
def drive(constraints, newline, seed, prompt="", context=(), rows=1, shuffle=False, max_steps=150, eos_bias=0.0):
    """Greedy over random scores through the processor, like the decoding loop; with ``shuffle``,
    rows are reordered every step, as beam search does."""
    gen = fake_generator(newline)
    tok = gen.tokenizer
    request = SimpleNamespace(prompt=prompt, context=tuple(context), settings=SimpleNamespace(max_length=max_steps))
    prompt_ids = tok.encode(prompt) or [tok.eos_token_id]
    state = start_state(constraints, gen, len(prompt_ids), request)
    g = torch.Generator().manual_seed(seed)
    seqs = torch.tensor([prompt_ids] * rows)
    for _ in range(max_steps):
        scores = torch.randn(rows, gen.model.size, generator=g)
        scores[:, tok.eos_token_id] += eos_bias
        out = state.processor(seqs, scores)
        nxt = out.argmax(dim=-1)
        seqs = torch.cat([seqs, nxt.unsqueeze(1)], dim=1)
        if shuffle:
            seqs = seqs[torch.randperm(rows, generator=g)]
        state.advance(seqs)
        if all(state.row_finished(i) or seqs[i, len(prompt_ids) :].eq(0).any() for i in range(rows)):
            break
    return [state.report(i, seqs[i, len(prompt_ids) :].tolist()) for i in range(rows)], tok


def check_report(report, constraints, prompt=""):
    """The report is satisfied, and its lines check out from their text alone."""
    assert report.satisfied, report
    lines = report.text.split("\n")
    assert len(lines) == constraints.n_lines
    options = RhymeOptions(constraints.rhyme_syllables, constraints.strict, constraints.families)
    if constraints.mode == "continue":
        lines[0] = report.lines[0].text
        assert lines[0].startswith(prompt)
    for j, text in enumerate(lines):
        assert "\ufffd" not in text
        if constraints.targets:
            assert count_syllables(text) == constraints.targets[j], (text, report)
    keys = [rhyme_key(t, options) for t in lines]
    letters = (constraints.scheme or ("A" if constraints.rhyme else "x") * constraints.n_lines)[-len(lines) :]
    for j, letter in enumerate(letters):
        if letter == "x":
            continue
        if constraints.rhyme and letter == next(c for c in letters if c != "x"):
            assert keys[j] == rhyme_key(constraints.rhyme, options)
        for k in range(j):
            if letters[k] == letter:
                assert keys[k] == keys[j]
            elif letters[k] != "x" and constraints.rhyme_syllables == 1:
                assert keys[k] != keys[j]  # different letters end differently
    return lines


CASES = [
    LyricConstraints(syllables=5),
    LyricConstraints(syllables=4, rhyme="사랑"),
    LyricConstraints(syllables=6, rhyme="노래야", rhyme_syllables=2),
    LyricConstraints(syllables=5, rhyme="밤", strict=True),
    LyricConstraints(pattern="4-5-3-6", scheme="ABAB"),
    LyricConstraints(syllables=5, rhyme="랑", lines=4, scheme="AABB"),
    LyricConstraints(syllables=4, lines=3, scheme="AxA", rhyme="해"),
]


@pytest.mark.parametrize("newline", [True, False])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_random_decoding_always_meets_the_constraints(case, newline):
    c = CASES[case]
    for seed in range(10):
        reports, _ = drive(c, newline, seed, prompt="오늘 밤")
        check_report(reports[0], c)
        assert reports[0].line_end == ("newline" if newline else "word boundary")


@pytest.mark.parametrize("newline", [True, False])
def test_reordered_rows_keep_their_own_state(newline):
    c = LyricConstraints(syllables=5, rhyme="랑", lines=3, scheme="ABA")
    for seed in range(5):
        reports, _ = drive(c, newline, seed, rows=4, shuffle=True)
        for report in reports:
            check_report(report, c)


@pytest.mark.parametrize("newline", [True, False])
def test_uncounted_rhyme(newline):
    c = LyricConstraints(rhyme="해")
    met = 0
    for seed in range(10):
        reports, _ = drive(c, newline, seed, prompt="노래", eos_bias=4.0)
        if reports[0].satisfied:
            check_report(reports[0], c)
            met += 1
        else:
            assert "max_length" in str(reports[0])
    assert met >= 8


def test_continue_mode_counts_the_typed_syllables():
    c = LyricConstraints(syllables=7, rhyme="랑", mode="continue")
    for seed in range(8):
        reports, _ = drive(c, False, seed, prompt="오늘 밤")
        check_report(reports[0], c, prompt="오늘 밤")
        assert count_syllables(reports[0].full_text) == 7
    reports, _ = drive(LyricConstraints(syllables=2, mode="continue"), False, 0, prompt="오늘 밤")
    assert not reports[0].satisfied and "already has 3 syllables" in str(reports[0])


def test_scheme_letters_before_the_generated_lines_follow_the_draft():
    c = LyricConstraints(syllables=4, lines=2, scheme="ABAB")
    for newline in (True, False):
        for seed in range(5):
            reports, _ = drive(c, newline, seed, prompt="푸른 별", context=["깊은 밤"])
            lines = check_report(reports[0], c)
            assert rhyme_key(lines[0]) == rhyme_key("깊은 밤") and rhyme_key(lines[1]) == rhyme_key("푸른 별")
            assert reports[0].full_text.split("\n")[0] == "푸른 별"


def test_failures_are_reported_with_their_reason():
    (report,), _ = drive(LyricConstraints(syllables=4, rhyme="뷁", strict=True, families=False), True, 0)
    assert not report.satisfied and "no token in the vocabulary ends in" in report.reasons[0]
    (report,), _ = drive(LyricConstraints(syllables=30), True, 0, max_steps=5)
    assert not report.satisfied and "max_length (5 new tokens) ran out" in str(report)
    assert report.to_dict()["lines"][0]["problem"] == "unfinished"
    (report,), _ = drive(LyricConstraints(lines=2), False, 0, prompt="밤")
    assert not report.satisfied and "no newline token" in str(report)


def test_a_syllable_glued_after_clause_punctuation_never_meets_a_rhyme():
    gen = fake_generator(True)
    ids = gen.tokenizer.ids
    c = LyricConstraints(syllables=3, rhyme="해")
    glued = start_state(c, gen, 1).report(0, [ids["하늘"], ids["!"], ids["해"], 0])
    assert not glued.satisfied  # 하늘!해 ends on 늘: the 해 glued after "!" is a stray fragment
    spaced = start_state(c, gen, 1).report(0, [ids["하늘"], ids["!"], ids[" 해"], 0])
    assert spaced.satisfied and spaced.lines[0].rhyme == "ㅐ"
    for seed in range(20):  # and decoding never glues one on: a space follows the mark
        reports, _ = drive(c, True, seed)
        for line in reports[0].text.split("\n") if reports[0].satisfied else ():
            assert rhyme_key(line) == "ㅐ", line


def test_a_disallowed_token_breaks_the_report():
    gen = fake_generator(True)
    c = LyricConstraints(syllables=3)
    state = start_state(c, gen, 1)
    ids = gen.tokenizer.ids
    report = state.report(0, [ids["사랑해"], ids["해요"], 0])  # 3 + 2 syllables: overshoots
    assert not report.satisfied and "breaks the constraint" in report.reasons[0]
    ok = state.report(0, [ids["사랑해"], ids["\n"]])
    assert ok.satisfied and ok.text == "사랑해"


def test_a_row_with_no_way_on_gets_only_the_end_token():
    gen = fake_generator(True)
    state = start_state(LyricConstraints(syllables=3), gen, 1)
    scores = torch.zeros(2, gen.model.size)
    scores[:, 3:] = float("-inf")  # other controls banned every real token
    out = state.processor(torch.tensor([[0], [0]]), scores)
    assert torch.isfinite(out).sum(dim=-1).tolist() == [1, 1] and out[:, 0].isfinite().all()
    report = state.report(0, [0])
    assert not report.satisfied and "ruled out by the other decoding controls" in report.reasons[0]
