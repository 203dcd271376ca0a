"""Lines end on whole words, on tiny models whose vocabularies hold stems and endings as separate
tokens (tests/word_models.py), through the real decoding loop, for greedy, sampling and beam.

Every line is counted again with ``count_syllables``; every line end is checked twice: against
the corpus (its last syllable is never a stem such as 좋, 싶, 줬) and against the rule itself,
with the word-break probability recomputed by a fresh forward pass over the whole sequence (no
KV cache), which also proves the cache the look-ahead cropped stayed consistent. Without the
rule the same requests end lines on stems, so the checks can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kolyric.engine.lyric.spec import WORD_END_MASS, LyricConstraints
from kolyric.engine.results import DoneEvent, GenerationRequest, TokenEvent
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator
from kolyric.korean.hangul import count_syllables

from tests import word_models

PRESETS = {"greedy": "greedy", "sample": "combined", "beam": "beam-3"}
PROMPTS = ["봄", "꿈", "너", "별", "밤", "길", "달", "사랑해", "나", "빛"]


@pytest.fixture(scope="session")
def word_dirs(models_dir) -> dict[str, Path]:
    cache = models_dir / "word-models"  # pytest's cache dir, or a session folder without one
    cache.mkdir(exist_ok=True)
    return {kind: word_models.model_dir(cache, kind) for kind in word_models.KINDS}


@pytest.fixture(scope="module")
def gens(word_dirs) -> dict[str, Generator]:
    from kolyric.engine.loading import load_model

    return {kind: Generator(load_model(str(path), device="cpu")) for kind, path in word_dirs.items()}


def run(gen, constraints, prompt, strategy, seed, **settings):
    request = GenerationRequest(prompt, None, preset(PRESETS[strategy], seed=seed, **settings), constraints=constraints)
    return gen.generate(request)


def fresh_word_break(gen, prompt_ids, ids):
    """The word-break share of the next-token distribution after ``prompt_ids + ids``, from one
    forward pass over the whole sequence (no cache)."""
    import torch

    from kolyric.engine.lyric.vocab_profile import profile_for

    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([list(prompt_ids) + list(ids)])).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    breaks = profile_for(gen.tokenizer, probs.shape[-1]).word_break
    return float(probs[breaks].sum())


@pytest.mark.parametrize("kind", word_models.KINDS)
@pytest.mark.parametrize("strategy", list(PRESETS))
def test_every_line_ends_on_a_whole_word(gens, kind, strategy):
    gen = gens[kind]
    c = LyricConstraints(syllables=5, lines=3)
    for seed, prompt in enumerate(PROMPTS):
        result = run(gen, c, prompt, strategy, seed)
        prompt_ids, _ = gen.prompt_ids(GenerationRequest(prompt), 0)
        for cand in result.candidates:
            report = cand.constraint_report
            assert report.satisfied, report
            lines = cand.text.split("\n")
            assert [count_syllables(line) for line in lines] == [5, 5, 5], lines
            assert not any(word_models.ends_on_stem(line) for line in lines), lines
            for line in report.lines:
                assert line.ok and line.word_end is not None and line.word_end >= WORD_END_MASS, line
            # the rule again, from fresh forward passes: after each line's last token
            ends = _completing_positions(gen, c, cand.token_ids, prompt)
            assert len(ends) == 3
            for line, end in zip(report.lines, ends):
                fresh = fresh_word_break(gen, prompt_ids, cand.token_ids[: end + 1])
                assert fresh >= WORD_END_MASS and abs(fresh - line.word_end) < 1e-3, (line, fresh)


def _completing_positions(gen, constraints, ids, prompt):
    """Positions of the tokens that completed each line's count, replayed by the constraint state."""
    state = gen.constraint_state(constraints, 1, GenerationRequest(prompt, None, preset("greedy")))
    row = state.root
    for pos, tid in enumerate(ids):
        row = state.step(row, tid, pos, ids)
    return [p for p in row.word_ends if p >= 0]


@pytest.mark.parametrize("kind", word_models.KINDS)
@pytest.mark.parametrize("strategy", list(PRESETS))
def test_without_the_rule_lines_end_on_stems(gens, kind, strategy):
    """The same requests with ``whole_words=False``: counts are met, and lines end on stems (so
    the test above can fail)."""
    gen = gens[kind]
    c = LyricConstraints(syllables=5, lines=3, whole_words=False)
    stems = 0
    for seed, prompt in enumerate(PROMPTS):
        for cand in run(gen, c, prompt, strategy, seed).candidates:
            assert cand.constraint_report.satisfied, cand.constraint_report
            stems += sum(word_models.ends_on_stem(line) for line in cand.text.split("\n"))
            assert all(line.word_end is None for line in cand.constraint_report.lines)
    assert stems >= (1 if strategy == "beam" else 3)  # beam's likeliest lines avoid most stems by themselves


@pytest.mark.parametrize("kind", word_models.KINDS)
def test_probabilities_after_a_step_taken_back_match_a_fresh_pass(gens, kind):
    """Every reported token probability (taken-back steps included) equals the one a fresh
    forward pass over the final sequence gives: the cropped KV cache is consistent."""
    import torch

    gen = gens[kind]
    c = LyricConstraints(pattern="4-3-5")
    checked = 0
    for strategy in ("greedy", "sample"):
        for seed, prompt in enumerate(PROMPTS[:6]):
            cand = run(gen, c, prompt, strategy, seed, n=1).candidates[0]
            prompt_ids, _ = gen.prompt_ids(GenerationRequest(prompt), 0)
            ids = [t.token_id for t in cand.tokens]
            with torch.inference_mode():
                logits = gen.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
            probs = torch.softmax(logits[len(prompt_ids) - 1 : -1], dim=-1)
            for k, info in enumerate(cand.tokens):
                assert abs(float(probs[k, info.token_id]) - info.prob) < 1e-4, (strategy, seed, k)
                checked += 1
    assert checked > 50


def test_sampled_candidates_are_the_same_alone_or_in_a_batch(gens):
    gen = gens["newline"]
    c = LyricConstraints(syllables=4, lines=2)
    settings = preset("combined", max_length=30)
    for seed in range(6):
        batch = gen.generate(GenerationRequest("봄", None, settings.replace(seed=seed, n=3), constraints=c))
        for i, cand in enumerate(batch.candidates):
            alone = gen.generate(GenerationRequest("봄", None, settings.replace(seed=seed + i, n=1), constraints=c))
            assert alone.candidates[0].token_ids == cand.token_ids, (seed, i)


@pytest.mark.parametrize("strategy", list(PRESETS))
def test_a_line_that_cannot_end_a_word_is_reported(gens, strategy):
    """Only the stem 좋 ends in ㅗ with the final ㅎ: a line that must rhyme so exactly cannot end
    on a whole word. The count and rhyme still hold, and the report says why it fails."""
    gen = gens["newline"]
    c = LyricConstraints(syllables=3, rhyme="좋", strict=True, families=False)
    for seed in range(3):
        cand = run(gen, c, "봄", strategy, seed).candidates[0]
        report = cand.constraint_report
        assert not report.satisfied
        assert count_syllables(cand.text) == 3 and cand.text.endswith("좋")
        assert any("ends mid-word on" in r and "whole-word rule" in r for r in report.reasons), report.reasons
        assert report.lines[0].word_end < WORD_END_MASS
        assert report.to_dict()["lines"][0]["word_end"] == report.lines[0].word_end


def test_lines_without_a_count_are_the_models_own(gens, word_dirs, capsys):
    """--lines 4 and no syllable target: on a newline vocabulary each line is what the model ends
    with a line break, and the run stops after four."""
    gen = gens["newline"]
    for strategy in PRESETS:
        for seed in range(3):
            cand = run(gen, LyricConstraints(lines=4), "봄", strategy, seed).candidates[0]
            report = cand.constraint_report
            assert report.satisfied and report.line_end == "newline", report
            lines = cand.text.split("\n")
            assert len(lines) == 4 and all(count_syllables(line) > 0 for line in lines), lines
            assert cand.finish_reason in ("constraint", "eos") or strategy == "beam"
    from kolyric.cli import main

    assert (
        main(
            [
                "generate",
                "봄",
                "--lines",
                "4",
                "--model",
                str(word_dirs["newline"]),
                "--device",
                "cpu",
                "--seed",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["candidates"][0]["constraints"]["satisfied"] is True
    assert len(out["candidates"][0]["text"].split("\n")) == 4


def test_lines_without_a_count_need_one_without_a_newline_token(gens):
    report = run(gens["plain"], LyricConstraints(lines=4), "봄", "greedy", 0).candidates[0].constraint_report
    assert not report.satisfied and "no newline token" in report.reasons[0]


@pytest.mark.parametrize("strategy", list(PRESETS))
def test_a_constrained_run_gets_a_max_length_that_fits_its_lines(gens, strategy):
    """Eight 6-syllable lines need more than the default 40 new tokens: with no max_length chosen
    the run gets enough; one chosen explicitly is kept, and the report says it ran out."""
    gen = gens["newline"]
    c = LyricConstraints(syllables=6, lines=8)
    assert preset(PRESETS[strategy]).max_length == 40
    settings = preset(PRESETS[strategy], seed=1)
    cand = gen.generate(GenerationRequest("봄", None, settings, constraints=c)).candidates[0]
    assert cand.constraint_report.satisfied, cand.constraint_report
    assert len(cand.text.split("\n")) == 8 and len(cand.token_ids) > 40
    chosen = gen.generate(GenerationRequest("봄", None, settings, constraints=c, max_length_set=True)).candidates[0]
    assert not chosen.constraint_report.satisfied
    assert "max_length (40 new tokens) ran out" in str(chosen.constraint_report)
    assert len(chosen.token_ids) <= 40


def test_the_stream_shows_lines_as_lines(gens):
    """Streamed pieces join to the candidate's text, line breaks included, and the events say
    where a line breaks: newline tokens on a newline vocabulary, the constraint's breaks on one
    without."""
    for kind, gen in gens.items():
        for strategy in PRESETS:
            request = GenerationRequest(
                "봄", None, preset(PRESETS[strategy], seed=2), constraints=LyricConstraints(syllables=4, lines=3)
            )
            events = list(gen.stream(request))
            pieces = [e for e in events if isinstance(e, TokenEvent)]
            cand = next(e for e in events if isinstance(e, DoneEvent)).result.candidates[0]
            streamed = "".join(e.text for e in pieces)
            assert streamed.startswith("\n") and streamed.strip("\n") == cand.text, (kind, strategy, streamed)
            assert [e.line_break for e in pieces] == ["\n" in e.text for e in pieces]
            # the prompt's line closed, two breaks between lines, and the last line's own break
            # where it ended with one rather than the end token
            assert sum(e.line_break for e in pieces) == streamed.count("\n") in (3, 4)
            assert cand.full_text == "봄\n" + cand.text


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_forced_tokens_are_measured_not_taken_back(gens, strategy):
    """A branch forces its tokens: a forced stem ending a line stays, and the report names it."""
    gen = gens["plain"]
    tok = gen.tokenizer
    forced = tuple(tok.convert_tokens_to_ids(["▁좋", "다", "▁좋"]))
    request = GenerationRequest(
        "봄", None, preset(PRESETS[strategy], seed=0), forced_ids=forced, constraints=LyricConstraints(syllables=3)
    )
    cand = gen.generate(request).candidates[0]
    assert cand.token_ids[:3] == list(forced)
    assert not cand.constraint_report.satisfied
    assert "ends mid-word on '좋'" in cand.constraint_report.reasons[0]


def test_the_torch_paths_choose_as_the_numpy_paths(gens, monkeypatch):
    """On a GPU the rankings the look-ahead walks are torch tensors, not NumPy views: with the
    NumPy paths off, the same requests give the same lines."""
    from kolyric.engine import processors, sampling

    def lines():
        out = []
        for gen in gens.values():
            for strategy in ("greedy", "sample"):
                for seed, prompt in enumerate(PROMPTS[:5]):
                    cand = run(gen, LyricConstraints(syllables=5, lines=2), prompt, strategy, seed).candidates[0]
                    assert cand.constraint_report.satisfied, cand.constraint_report
                    out.append(cand.token_ids)
        return out

    numpy_lines = lines()
    monkeypatch.setattr(processors, "numpy_view", lambda scores: None)
    monkeypatch.setattr(processors, "_NUMPY_MIN_VOCAB", 10**9)
    monkeypatch.setattr(sampling, "NUMPY_DRAWS", False)
    assert lines() == numpy_lines


HAS_ONNX = all(__import__("importlib").util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


@pytest.mark.skipif(not HAS_ONNX, reason="needs onnxruntime, onnx and onnxscript (kolyric[int8])")
def test_the_onnx_runtime_cache_takes_a_step_back(word_dirs, tmp_path, monkeypatch):
    """int8 decoding steps on ONNX Runtime keep their own KV values: a step taken back (``crop``)
    continues exactly as if it had never been taken, copied rows (``rows``) give their rows'
    logits, and the whole-word look-ahead runs on them with every probability as a replay gives."""
    import torch

    from kolyric.engine import quantize
    from kolyric.engine.loading import load_model
    from kolyric.engine.lyric import lookahead

    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", str(tmp_path))
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "onnxruntime")
    loaded = load_model(str(word_dirs["newline"]), device="cpu", precision="int8")
    assert quantize.int8_backend(loaded.model) == "onnxruntime", loaded.notices
    decoder, tok = loaded.model.kolyric_decoder, loaded.tokenizer
    prompt = torch.tensor([tok.encode("봄 좋아", add_special_tokens=False)])
    a, b, x = (tok.convert_tokens_to_ids(t) for t in ("▁꿈", "▁별", "▁싶"))
    n = prompt.shape[1]

    def step(token, past, length):
        out = decoder(
            input_ids=torch.tensor([[token]]),
            attention_mask=torch.ones(1, length, dtype=torch.long),
            use_cache=True,
            **{decoder.cache_name: past},
        )
        return out.logits[0, -1], getattr(out, decoder.cache_name)

    with torch.inference_mode():
        first = loaded.model(input_ids=prompt, attention_mask=torch.ones_like(prompt), use_cache=True)
        past0 = getattr(first, decoder.cache_name)
        _, past_a = step(a, past0, n + 1)
        straight, _ = step(b, past_a, n + 2)
        _, past_ax = step(x, past_a, n + 2)  # a step the look-ahead takes back
        past_ax.crop(-1)
        assert past_ax.get_seq_length() == n + 1
        again, _ = step(b, past_ax, n + 2)
        assert torch.allclose(straight, again, atol=1e-6)
        one, _ = step(b, past_a.rows([0], n + 1), n + 2)
        assert torch.allclose(one, straight, atol=1e-6) and past_a.get_seq_length() == n + 1
        # two copies of the row (ONNX Runtime quantizes activations per batch, so compare
        # within the batch): the same token gives the same logits in both
        out = decoder(
            input_ids=torch.tensor([[b], [b]]),
            attention_mask=torch.ones(2, n + 2, dtype=torch.long),
            use_cache=True,
            **{decoder.cache_name: past_a.rows([0, 0], n + 1)},
        )
        assert torch.allclose(out.logits[0, -1], out.logits[1, -1], atol=1e-6)

    crops = []
    real_crop = lookahead.crop_cache
    monkeypatch.setattr(
        lookahead, "crop_cache", lambda past, length: (crops.append(type(past).__name__), real_crop(past, length))[1]
    )
    gen = Generator(loaded)
    c = LyricConstraints(syllables=5, lines=3)
    for seed, prompt_text in enumerate(PROMPTS[:6]):
        cand = run(gen, c, prompt_text, "greedy", seed).candidates[0]
        assert cand.constraint_report.satisfied, cand.constraint_report
        lines = cand.text.split("\n")
        assert [count_syllables(line) for line in lines] == [5, 5, 5]
        assert not any(word_models.ends_on_stem(line) for line in lines), lines
        replay = _replay_probs(
            loaded, decoder, gen.prompt_ids(GenerationRequest(prompt_text), 0)[0], [t.token_id for t in cand.tokens]
        )
        assert all(abs(p - t.prob) < 1e-5 for p, t in zip(replay, cand.tokens))
    assert "_OnnxPast" in crops  # steps were taken back on ONNX Runtime's cache


def _replay_probs(loaded, decoder, prompt_ids, ids):
    """Each token's probability decoding ``ids`` straight through (the prompt on PyTorch, every
    later step on the ONNX Runtime decoder, as the loop runs them), no step taken back."""
    import torch

    probs = []
    with torch.inference_mode():
        prompt = torch.tensor([prompt_ids])
        out = loaded.model(input_ids=prompt, attention_mask=torch.ones_like(prompt), use_cache=True)
        for k, tid in enumerate(ids):
            p = torch.softmax(out.logits[0, -1].float(), dim=-1)
            probs.append(float(p[tid]))
            past = getattr(out, decoder.cache_name)
            out = decoder(
                input_ids=torch.tensor([[tid]]),
                attention_mask=torch.ones(1, len(prompt_ids) + k + 1, dtype=torch.long),
                use_cache=True,
                **{decoder.cache_name: past},
            )
    return probs
