"""Stop strings and banned phrases on tiny real models whose words are spelled over several
tokens (tests/word_models.py: one token per syllable), so a phrase or a stop string of two
syllables always spans tokens."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.phrases import PhraseBan, StopText, cut_at_stop, find_stop
from kolyric.engine.results import DoneEvent, GenerationRequest, TokenEvent
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator

from tests import word_models

PROMPTS = ["봄", "사랑해", "너", "밤"]


@pytest.fixture(scope="session")
def word_dirs(models_dir) -> dict[str, Path]:
    cache = models_dir / "word-models"
    cache.mkdir(exist_ok=True)
    return {kind: word_models.model_dir(cache, kind) for kind in word_models.KINDS}


@pytest.fixture(scope="module")
def gen(word_dirs) -> Generator:
    from kolyric.engine.loading import load_model

    return Generator(load_model(str(word_dirs["newline"]), device="cpu"))


def generate(gen, prompt, name="greedy", seed=0, constraints=None, **settings):
    """The result, and each candidate's streamed text."""
    request = GenerationRequest(
        prompt, None, preset(name, seed=seed, max_length=40, **settings), constraints=constraints
    )
    pieces: dict[int, list[str]] = {}
    result = None
    for event in gen.stream(request):
        if isinstance(event, TokenEvent):
            pieces.setdefault(event.candidate, []).append(event.text)
        elif isinstance(event, DoneEvent):
            result = event.result
    return result, {i: "".join(p) for i, p in pieces.items()}


def spanning_pairs(gen, candidate) -> list[str]:
    """Two-syllable strings of the candidate's text whose syllables come from different tokens."""
    out = []
    texts = [gen.tokenizer.decode([t]) for t in candidate.token_ids]
    for a, b in itertools.pairwise(texts):
        a, b = a.strip("▁ \n"), b.strip("▁ \n")
        if a and b and not b[0].isspace():
            out.append(a[-1] + b[0])
    return out


def replayed_probs(gen, prompt, ids):
    """Each token's probability from one forward pass over the whole sequence (no cache)."""
    import torch

    prompt_ids = gen.prompt_ids(GenerationRequest(prompt), 0)[0]
    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([prompt_ids + list(ids)])).logits[0].float()
    probs = torch.softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
    return [float(probs[k, t]) for k, t in enumerate(ids)]


# -- banned phrases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["greedy", "combined"])
def test_a_phrase_spelled_over_tokens_never_appears(gen, name):
    tested = 0
    for seed, prompt in enumerate(PROMPTS):
        free, _ = generate(gen, prompt, name, seed)
        cand = free.candidates[0]
        pairs = [p for p in spanning_pairs(gen, cand) if p in cand.text.replace(" ", "")]
        joined = [p for p in pairs if p in cand.text]
        if not joined:
            continue
        phrase = joined[0]
        assert all(phrase not in gen.tokenizer.decode([t]) for t in cand.token_ids)  # no token holds it
        banned, streamed = generate(gen, prompt, name, seed, ban=(phrase,))
        out = banned.candidates[0]
        assert phrase not in out.text and phrase not in out.full_text.split("\n", 1)[-1], (phrase, out.text)
        assert phrase not in streamed[0]
        assert out.finish_reason in ("eos", "length"), out
        # the tokens taken back never reached the model: each probability is a fresh pass's
        replay = replayed_probs(gen, prompt, [t.token_id for t in out.tokens])
        assert all(abs(p - t.prob) < 1e-4 for p, t in zip(replay, out.tokens))
        tested += 1
    assert tested >= 2  # the model writes such phrases, so the bans were tested


def test_overlapping_phrases_are_each_kept_out(gen):
    free, _ = generate(gen, "사랑해", "greedy")
    text = free.candidates[0].text
    pairs = [p for p in spanning_pairs(gen, free.candidates[0]) if p in text]
    assert pairs, text
    first = pairs[0]
    # a phrase, one that overlaps its end, and a longer one holding it
    overlapping = [p for p in pairs[1:] if p[0] == first[-1]]
    bans = (first, *(overlapping[:1] or [first[-1] + "아"]), first + "아")
    for name, seed in (("greedy", 0), ("combined", 1), ("combined", 2)):
        result, streamed = generate(gen, "사랑해", name, seed, ban=bans, **({"n": 2} if name != "greedy" else {}))
        for cand in result.candidates:
            assert not any(b in cand.text for b in bans), (bans, cand.text)
        assert not any(b in s for s in streamed.values() for b in bans)


def test_a_ban_of_every_token_is_reported_not_a_hang(gen):
    syllables = sorted({s for w in word_models.WORDS for s in w})
    result, streamed = generate(gen, "봄", "greedy", ban=(*syllables, " ", "\n"))
    cand = result.candidates[0]
    assert cand.finish_reason == "banned" and cand.text == "" and not streamed
    assert cand.note and cand.note.startswith("ban:") and "banned" in cand.note
    assert result.to_dict()["candidates"][0]["note"] == cand.note
    sampled, _ = generate(gen, "봄", "combined", ban=(*syllables, " ", "\n"), n=2)
    assert [c.finish_reason for c in sampled.candidates] == ["banned", "banned"]


def test_a_ban_under_lyric_constraints(gen):
    c = LyricConstraints(syllables=5, lines=2)
    free, _ = generate(gen, "봄", "greedy", constraints=c)
    cand = free.candidates[0]
    pairs = [p for p in spanning_pairs(gen, cand) if p in cand.text]
    assert pairs, cand.text
    result, _ = generate(gen, "봄", "greedy", constraints=c, ban=(pairs[0],))
    out = result.candidates[0]
    assert pairs[0] not in out.text and out.constraint_report.satisfied, out.constraint_report


def test_beam_search_never_ranks_a_banned_phrase(gen):
    tested = 0
    for prompt in PROMPTS:
        free, _ = generate(gen, prompt, "beam-3")
        pairs = [p for c in free.candidates for p in spanning_pairs(gen, c) if p in c.text]
        if not pairs:
            continue
        result, streamed = generate(gen, prompt, "beam-3", ban=(pairs[0],))
        for cand in result.candidates:
            assert pairs[0] not in cand.text and pairs[0] not in gen.tokenizer.decode(cand.token_ids), cand.text
        assert pairs[0] not in streamed[0]
        tested += 1
    assert tested >= 2
    syllables = sorted({s for w in word_models.WORDS for s in w})
    empty, _ = generate(gen, "봄", "beam-3", ban=(*syllables, " ", "\n"))
    assert empty.candidates[0].finish_reason == "banned" and empty.candidates[0].note.startswith("ban:")


def test_the_check_finds_a_phrase_only_where_it_ends_in_the_new_token(gen):
    tok = gen.tokenizer
    ids = tok.encode("사랑 해", add_special_tokens=False)
    ban = PhraseBan(("랑해", "사랑"), tok, gen.vocab_size, gen.eos_id)
    assert ban.completes(ids[:1], ids[1]) == "사랑"  # 사 + 랑
    assert ban.completes(ids[:2], ids[2]) is None  # " 해": a space between
    glued = tok.encode("해", add_special_tokens=False)[0]
    assert ban.completes(ids[:2], glued) == "랑해"
    assert ban.completes([], ids[0]) is None and ban.completes(ids[:1], gen.eos_id) is None
    assert not ban.token_ids  # one-syllable tokens hold neither phrase: nothing is masked
    single = PhraseBan(("사",), tok, gen.vocab_size, gen.eos_id)
    assert sorted(tok.decode([t]).strip("▁ ") for t in single.token_ids) == ["사", "사"]


# -- stop strings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [False, True])
def test_a_stop_string_spanning_tokens_ends_the_candidate(gen, keep):
    tested = 0
    for prompt in PROMPTS:
        free, _ = generate(gen, prompt, "greedy")
        cand = free.candidates[0]
        pairs = [p for p in spanning_pairs(gen, cand) if p in cand.text]
        if not pairs:
            continue
        stop = pairs[len(pairs) // 2]
        at = cand.text.index(stop)
        result, streamed = generate(gen, prompt, "greedy", stop=(stop,), keep_stop=keep)
        out = result.candidates[0]
        want = cand.text[: at + len(stop)] if keep else cand.text[:at].rstrip()
        assert out.finish_reason == "stop" and out.text == want, (stop, cand.text, out.text)
        assert out.token_ids == cand.token_ids[: len(out.token_ids)]  # the same tokens, up to the stop
        assert out.full_text.endswith(want) and out.full_text.startswith(prompt)
        # the stream never showed the part of the stop string that the text trims
        assert streamed[0].strip() == want.strip()
        assert (stop in streamed[0]) == keep
        tested += 1
    assert tested >= 2


def test_a_stop_string_in_a_sampled_batch_ends_only_its_row(gen):
    result, _ = generate(gen, "봄", "combined", seed=3, n=3)
    texts = [c.text for c in result.candidates]
    stop = next(p for c in result.candidates for p in spanning_pairs(gen, c) if p in c.text)
    stopped, _ = generate(gen, "봄", "combined", seed=3, n=3, stop=(stop,))
    for before, after in zip(texts, stopped.candidates):
        if stop in before:
            assert after.finish_reason == "stop" and after.text == before[: before.index(stop)].rstrip()
        else:
            assert after.text == before


def test_beam_search_stops_at_a_stop_string(gen):
    """A hypothesis that reaches a stop string is finished there (beam search may then rank
    another above it): no candidate goes past one, and one that reached it is cut there."""
    free, _ = generate(gen, "봄", "beam-3")
    cand = free.candidates[0]
    pairs = [p for p in spanning_pairs(gen, cand) if p in cand.text]
    assert pairs, cand.text
    for keep in (False, True):
        result, _ = generate(gen, "봄", "beam-3", stop=(pairs[0],), keep_stop=keep)
        for out in result.candidates:
            raw = gen.tokenizer.decode(out.token_ids)
            if out.finish_reason == "stop":
                assert pairs[0] in raw and out.text.endswith(pairs[0]) == keep and out.text.count(pairs[0]) == keep
            else:
                assert pairs[0] not in raw, (out.finish_reason, raw)


def test_stop_text_holds_back_what_could_begin_a_stop_string():
    watch = StopText(("후렴", "\n\n"), keep=False)
    assert watch.push("봄이") == ["봄이"]
    assert watch.push("후") == []  # could begin 후렴
    assert watch.push("회") == ["후", "회"]  # it did not
    assert watch.push("\n") == []
    assert watch.push("\n다음") == ["", ""] and watch.stopped
    kept = StopText(("후렴",), keep=True)
    assert kept.push("봄 후") == [] and kept.push("렴 끝") == ["봄 후", "렴"]
    tail = StopText(("후렴",), keep=False)
    assert tail.push("봄 후") == [] and tail.flush() == ["봄 후"]  # the row ended: all of it
    assert cut_at_stop("가나다", ("나", "가나"), keep=False) == "" and cut_at_stop("가나다", ("다",), True) == "가나다"
    assert cut_at_stop("가나", ("라",), False) is None


def test_a_stop_string_in_the_leading_whitespace_does_not_end_the_line_before_it():
    # a continuation of the next line opens with its line break: --stop '\n' means "this line only"
    line = StopText(("\n",), keep=False)
    assert line.push("\n") == ["\n"] and not line.stopped
    assert line.push("그대") == ["그대"]
    assert line.push("여\n다음") == ["여"] and line.stopped
    assert find_stop("\n\n그대\n", ("\n",)) == (4, "\n")
    assert find_stop("\n 그대", ("\n 그",)) == (0, "\n 그")  # reaching past the whitespace, it counts
    assert find_stop(" \n ", ("\n",)) is None and cut_at_stop("\n그대\n끝", ("\n",), keep=False) == "\n그대"


def test_a_phrase_spelled_in_byte_tokens_is_found_where_its_last_byte_lands(tiny_bytelevel_dir):
    """A byte-level vocabulary can split a syllable's UTF-8 bytes over tokens: the phrase is
    complete only at the token holding its last byte, and is found there, not before."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bytelevel_dir))
    text = "그리움이 밤하늘 별빛"
    ids = tok.encode(text, add_special_tokens=False)
    ban = PhraseBan(("밤하늘",), tok, len(tok), tok.eos_token_id)
    hits = [k for k in range(len(ids)) if ban.completes(ids[:k], ids[k]) is not None]
    done_at = next(k for k in range(len(ids)) if "밤하늘" in tok.decode(ids[: k + 1]))
    assert hits == [done_at]


def test_a_ban_and_a_stop_added_while_streaming_apply_from_the_next_token(gen):
    from dataclasses import replace

    from kolyric.engine.stream import LiveControls

    free, _ = generate(gen, "사랑해", "greedy")
    cand = free.candidates[0]
    head = gen.tokenizer.decode(cand.token_ids[:3])
    late = [p for p in spanning_pairs(gen, cand) if p in cand.text and p not in head]
    assert late, cand.text
    settings = preset("greedy", seed=0, max_length=40)
    for change in ({"ban": (late[0],)}, {"stop": (late[0],)}):
        controls = LiveControls(settings)
        result = None
        for event in gen.stream(GenerationRequest("사랑해", None, settings), controls=controls):
            if isinstance(event, TokenEvent) and event.step == 2:
                controls.update(replace(settings, **change))
            elif isinstance(event, DoneEvent):
                result = event.result
        out = result.candidates[0]
        assert late[0] not in out.text, (change, out.text)
        assert out.token_ids[:3] == cand.token_ids[:3]
        if "stop" in change:
            assert out.finish_reason == "stop" and cand.text.startswith(out.text)
