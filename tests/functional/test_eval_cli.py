"""`kolyric eval` end to end on tiny models, and which model runs when none is named and the
hub cannot be reached (the fallback to kolyric-mini, and a hub id failing fast without network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kolyric.cli import main
from kolyric.engine import loading
from kolyric.engine.loading import DEFAULT_MODEL, load_model, resolve_model_spec

from tests.conftest import CORPUS_DIR

TSV = (
    "text\tpolarity\n너무 재밌다\t긍정\n시간 낭비\t부정\n배우 연기 최고\t1\n별로였다\t0\n"
    "그냥 그럼\t\n음악이 좋다\t긍정\n지루함\t부정\n"
)


def eval_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "--device", "cpu", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def eval_json(capsys, *args: str) -> tuple[dict, str]:
    code, out, err = eval_cli(capsys, "--json", *args)
    assert code == 0, err
    return json.loads(out), err


@pytest.fixture
def tsv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.tsv"
    path.write_text(TSV, encoding="utf-8")
    return path


# -- the figures move the right way ------------------------------------------------------------------
def test_a_trained_model_beats_a_random_one(capsys, tiny_model_dir, trained_tiny_dir):
    common = ["--corpus", "nsmc", "--corpus-dir", str(CORPUS_DIR), "--limit", "300", "--batch-size", "32"]
    rand, _ = eval_json(capsys, "--model", str(tiny_model_dir), "--metrics", "bpc,accuracy", *common)
    trained, err = eval_json(capsys, "--model", str(trained_tiny_dir), *common)
    assert rand["examples"] == trained["examples"] == 300
    # a random 1200-token model pays ~log2(1200) ≈ 10 bits a token; 150 steps of training save a third
    assert trained["bits_per_char"] < rand["bits_per_char"] - 1.0
    # 150 steps barely teach polarity (both sit near 0.5, chance): trained must not be worse than
    # random beyond the noise of 300 reviews (one standard error ≈ 0.03)
    assert trained["polarity_accuracy"] >= rand["polarity_accuracy"] - 0.03
    assert 0.0 < trained["distinct_1"] <= 1.0 and 0.0 <= trained["distinct_2"] <= 1.0
    assert len(trained["details"]["distinct"]["samples"]) == 20  # 10 prompts × 2 polarities
    assert trained["details"]["bits"]["truncated"] > 0  # its window is 64 tokens: the long ones are cut
    assert "eval: scoring under the true polarity 300/300" in err
    assert "eval: sampling continuations 20/20" in err
    assert "only their first 64 tokens were scored" in err


def test_terminal_report(capsys, tiny_model_dir, tsv):
    code, out, err = eval_cli(capsys, "--model", str(tiny_model_dir), "--corpus", str(tsv), "--metrics", "bpc,accuracy")
    assert code == 0, err
    assert "bits/char" in out and "polarity accuracy" in out and "distinct" not in out
    assert f"{tsv} · 7 texts" in out
    assert out.count("\n") <= 6


def test_limit_zero_means_all_and_texts_without_polarity_only_count_for_bits(capsys, tiny_model_dir, tsv):
    data, _ = eval_json(
        capsys, "--model", str(tiny_model_dir), "--corpus", str(tsv), "--limit", "0", "--metrics", "bpc,accuracy"
    )
    assert data["examples"] == 7 and data["details"]["bits"]["examples"] == 7
    assert data["details"]["accuracy"]["examples"] == 6  # "그냥 그럼" has no polarity
    data, _ = eval_json(
        capsys,
        "--model",
        str(tiny_model_dir),
        "--corpus",
        str(tsv),
        "--limit",
        "3",
        "--metrics",
        "bpc",
        "--max-seq-length",
        "4",
    )
    assert data["examples"] == 3 and data["options"]["max_seq_length"] == 4
    assert data["details"]["bits"]["truncated"] > 0


# -- mistakes cost no model load ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--limit", "-1"], "--limit"),
        (["--batch-size", "0"], "--batch-size"),
        (["--max-seq-length", "1"], "--max-seq-length"),
        (["--seed", "-3"], "--seed"),
        (["--metrics", "bpc,perplexity"], "--metrics"),
    ],
)
def test_bad_options_are_refused_before_loading(capsys, args, message):
    code, out, err = eval_cli(capsys, "--model", "/nonexistent/model", *args)
    assert code == 2 and message in err and "/nonexistent/model" not in err and out == ""


def test_missing_nsmc_names_the_path(capsys, tmp_path):
    code, _, err = eval_cli(capsys, "--model", "/nonexistent/model", "--corpus-dir", str(tmp_path))
    assert code == 2
    assert str(tmp_path / "nsmc" / "ratings_test.txt") in err and "--corpus-dir" in err


def test_corpus_without_polarities_cannot_give_accuracy(capsys, tmp_path):
    path = tmp_path / "lyrics.txt"
    path.write_text("하늘 위로\n날아가\n\n밤이 오면\n", encoding="utf-8")
    code, _, err = eval_cli(capsys, "--model", "/nonexistent/model", "--corpus", str(path), "--metrics", "accuracy")
    assert code == 2 and "no text has a polarity" in err
    # Without --metrics, texts with line breaks and no polarity get the verse report.
    code, _, err = eval_cli(capsys, "--model", "/nonexistent/model", "--corpus", str(path))
    assert code == 2 and "no text has a polarity" not in err and "/nonexistent/model" in err


# -- which model when none is named -------------------------------------------------------------------------
@pytest.fixture
def fake_mini(monkeypatch, tmp_path, tiny_model_dir) -> Path:
    """kolyric-mini as an install would ship it (a copy of the tiny model), and no hub cache."""
    mini = tmp_path / "kolyric-mini"
    shutil.copytree(tiny_model_dir, mini)
    monkeypatch.setattr(loading, "MINI_PATH", mini)
    monkeypatch.setattr(loading, "_hub_cached", lambda repo_id: False)
    return mini


def test_offline_falls_back_to_mini_and_says_why(fake_mini, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec, notice = resolve_model_spec(None)
    assert spec == "mini"
    assert "kolyric-mini" in notice and DEFAULT_MODEL in notice and "HF_HUB_OFFLINE" in notice
    loaded = load_model(spec, device="cpu")
    assert loaded.kind == "mini" and loaded.description.startswith("kolyric-mini")


def test_unreachable_hub_falls_back_to_mini_with_the_reason(fake_mini, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    reason = "huggingface.co: [Errno -3] Temporary failure in name resolution"
    monkeypatch.setattr(loading, "hub_unreachable_reason", lambda timeout=3.0: reason)
    spec, notice = resolve_model_spec(None)
    assert spec == "mini" and reason in notice


def test_a_reachable_hub_or_a_named_model_is_kept(fake_mini, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "hub_unreachable_reason", lambda timeout=3.0: None)
    assert resolve_model_spec(None) == (DEFAULT_MODEL, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_spec("./my-model") == ("./my-model", None)
    assert resolve_model_spec(None, configured="mini") == ("mini", None)


def test_without_mini_the_default_stays_so_its_load_error_names_it(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "MINI_PATH", tmp_path / "not-installed")
    monkeypatch.setattr(loading, "_hub_cached", lambda repo_id: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_spec(None) == (DEFAULT_MODEL, None)


def test_eval_without_a_model_runs_on_mini_with_a_note(fake_mini, monkeypatch, capsys, tsv):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data, err = eval_json(capsys, "--corpus", str(tsv), "--metrics", "bpc")
    assert "note: using kolyric-mini" in err and "HF_HUB_OFFLINE" in err
    assert data["model"].startswith("kolyric-mini") and data["bits_per_char"] > 0


def _no_network_prefix() -> list[str] | None:
    """``unshare -n`` (root) or ``unshare -rn`` (an unprivileged user namespace), if either works."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "사랑"],
        ["eval", "--corpus-dir", str(CORPUS_DIR), "--limit", "5"],
    ],
)
def test_hub_id_without_any_network_fails_fast_naming_it(argv, tmp_path):
    prefix = _no_network_prefix()
    if prefix is None:
        pytest.skip("unshare -n is not available here")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # no hint: the probe must find out
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    started = time.monotonic()
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "kolyric", *argv, "--model", DEFAULT_MODEL],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert DEFAULT_MODEL in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
