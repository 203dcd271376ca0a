"""Planning a small-file run: what an epoch covers, and defaults that suit a few songs."""

from __future__ import annotations

import json

from kolyric.training.plan import MAX_EPOCHS, MIN_EPOCHS, lyrics_defaults, plan_file
from kolyric.training.scratch import train_tokenizer

from tests.conftest import ROOT

VERSE = ROOT / "tests" / "data" / "verse_sample.jsonl"


def test_plan_says_every_token_of_every_song_is_used(tmp_path):
    poems = [json.loads(line)["text"] for line in VERSE.read_text(encoding="utf-8").splitlines()]
    songs = tmp_path / "songs.txt"
    songs.write_text("\n\n".join(p.replace("\n\n", "\n") for p in poems[:6]), encoding="utf-8")
    tokenizer = train_tokenizer(poems * 2, vocab_size=400)
    plan = plan_file(songs, tokenizer, max_seq_length=32, batch_size=8, val_share=0.2)
    assert plan.train_examples + plan.val_examples == 6 and plan.val_examples == 1
    assert plan.rows > plan.train_examples  # songs longer than 32 tokens: windows
    assert plan.coverage.trained_tokens == plan.coverage.corpus_tokens
    text = plan.describe()
    assert "5 text(s)" in text and "(100%)" in text and f"{plan.steps_per_epoch} step(s) of 8" in text


def test_lyrics_defaults_scale_epochs_and_learning_rate():
    few = lyrics_defaults(4, n_params=1_600_000, context=128)
    assert few["epochs"] == MAX_EPOCHS and few["lr"] == 1e-3 and few["max_seq_length"] == 128
    many = lyrics_defaults(100_000, n_params=125_000_000, context=1024)
    assert many["epochs"] == MIN_EPOCHS and many["lr"] == 1e-4
    assert lyrics_defaults(10, n_params=10, context=64)["max_seq_length"] == 64


def test_a_base_not_on_disk_is_planned_as_a_pretrained_model(tmp_path):
    from kolyric.training.plan import plan_for_form

    songs = tmp_path / "songs.txt"
    songs.write_text("첫 줄\n둘째 줄\n\n다른 노래\n끝 줄\n\n세 번째\n노래\n", encoding="utf-8")
    found = plan_for_form(songs, "someone/not-cached-here")
    assert "estimated with kolyric-mini's tokenizer" in found.note
    assert found.defaults["lr"] == 1e-4  # fine-tuning a hub model, not training mini
    scratch = plan_for_form(songs, None)
    assert scratch.defaults["lr"] == 1e-3 and "from scratch" in scratch.note
