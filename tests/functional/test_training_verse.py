"""Real tiny trainings on verse: poems and NSMC together, a lyrics file over a base without line
tokens, and `kolyric eval` on held-out poems."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from kolyric.engine.loading import load_model
from kolyric.training.events import EventWriter
from kolyric.training.run import TrainConfig, train
from kolyric.training.scratch import keeps_line_breaks

from tests.conftest import ROOT
from tests.tiny_runs import TINY_TRAIN

VERSE = ROOT / "tests" / "data" / "verse_sample.jsonl"
TINY = {
    **TINY_TRAIN,
    "from_scratch": False,
    "limit_train": 200,
    "limit_val": 32,
    "vocab_size": 500,
    "max_seq_length": 48,
    "batch_size": 16,
    "epochs": 1,
    "log_every_s": 0,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(out, **overrides):
    stream = io.StringIO()
    result = train(TrainConfig(out=str(out), **{**TINY, **overrides}), EventWriter(stream, None))
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(scope="module")
def verse_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("verse") / "out"
    return out, *run(out, from_scratch=True, corpus=["nsmc", f"{VERSE},repeat=2"])


def test_poems_and_reviews_train_together_with_every_token_covered(verse_run):
    _out, result, events = verse_run
    corpus = [e for e in events if e.get("phase") == "corpus" and "train" in e]
    assert "NSMC" in corpus[-1]["message"] and "×2" in corpus[-1]["message"]
    tokenized = [e for e in events if e.get("phase") == "tokenize" and "corpus_tokens" in e][-1]
    assert tokenized["trained_tokens"] == tokenized["corpus_tokens"] > 0
    assert tokenized["split_examples"] > 0  # poems are longer than 48 tokens: windowed, not cut
    assert "corpus tokens trained on (100%)" in tokenized["message"]
    loaded = load_model(str(result.export_dir), device="cpu")
    assert keeps_line_breaks(loaded.tokenizer)


def test_a_lyrics_file_over_a_base_without_line_tokens_keeps_its_breaks(tmp_path):
    from kolyric.training.scratch import ModelShape, new_model

    from tests.unit.test_windows import reviews_only_tokenizer

    base_tok = reviews_only_tokenizer()
    base_tok.bos_token = base_tok.eos_token
    base = tmp_path / "base"
    new_model(base_tok, ModelShape(n_layer=1, n_embd=32, n_head=2, n_positions=64)).save_pretrained(base)
    base_tok.save_pretrained(base)
    songs = tmp_path / "songs.txt"
    songs.write_text(
        "\n\n".join(
            json.loads(line)["text"].replace("\n\n", "\n") for line in VERSE.read_text(encoding="utf-8").splitlines()
        ),
        encoding="utf-8",
    )
    result, events = run(tmp_path / "out", model=str(base), corpus=str(songs), max_seq_length=32, val_share=0.2)
    assert any("added line and stanza break tokens" in e.get("message", "") for e in events)
    loaded = load_model(str(result.export_dir), device="cpu")
    assert keeps_line_breaks(loaded.tokenizer)
    assert loaded.model.get_input_embeddings().weight.shape[0] >= len(loaded.tokenizer)


def test_eval_reports_verse_figures_on_held_out_poems(verse_run, capsys):
    from kolyric.cli import main

    _, result, _ = verse_run
    code = main(
        [
            "eval",
            "--model",
            str(result.export_dir),
            "--corpus",
            str(VERSE),
            "--split",
            "val",
            "--val-share",
            "0.2",
            "--samples",
            "3",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["poems"] == round(21 * 0.2) and "val split" in report["corpus"]
    assert math.isfinite(report["bits_per_char"]) and report["bits_per_char"] > 0
    assert report["line_break_tokens"] is True
    # Only a character outside the tiny tokenizer's alphabet (an <unk>) keeps a poem from round-tripping.
    assert report["round_trips"] == report["poems"] or report["unk_tokens"] > 0
    assert len(report["samples"]) == 3 and 0 <= report["copy_rate"] <= 1
    assert report["poem_spread"]["lines"] > 10


def test_sliding_window_scores_every_token_once(verse_run):
    from kolyric.evaluate_verse import score_poems

    _, result, _ = verse_run
    loaded = load_model(str(result.export_dir), device="cpu")
    poem = json.loads(VERSE.read_text(encoding="utf-8").splitlines()[0])["text"]
    long = "\n\n".join([poem] * 3)  # well past the 64-token window
    ids = loaded.tokenizer.encode(long, add_special_tokens=False)
    assert len(ids) > 64
    _bits, chars, tokens, _ = score_poems(loaded, [long])
    assert tokens == len(ids) + 1 and chars == len(long) + 1  # the EOS is a token and a character
    # A text inside the window is scored in one pass: the same as a direct forward pass.
    short = poem.split("\n")[0]
    bits_short, *_ = score_poems(loaded, [short])
    seq = [
        loaded.tokenizer.eos_token_id,
        *loaded.tokenizer.encode(short, add_special_tokens=False),
        loaded.tokenizer.eos_token_id,
    ]
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.model(input_ids=torch.tensor([seq])).logits[0], dim=-1)
    direct = -sum(float(logp[i, seq[i + 1]]) for i in range(len(seq) - 1)) / math.log(2)
    assert bits_short == pytest.approx(direct, rel=1e-4)
