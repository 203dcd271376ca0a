"""Hardware flags this machine cannot meet end in one line naming the flags, before any step."""

from __future__ import annotations

import pytest
import torch

from kolyric.cli import main

from tests.conftest import CORPUS_DIR

QUICK = [
    "train",
    "--from-scratch",
    "--corpus",
    "nsmc",
    "--corpus-dir",
    str(CORPUS_DIR),
    "--vocab-size",
    "300",
    "--n-layer",
    "1",
    "--n-embd",
    "32",
    "--n-head",
    "2",
    "--limit-train",
    "64",
    "--limit-val",
    "16",
    "--num-workers",
    "0",
    "--max-steps",
    "1",
]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--accelerator", "gpu"], "--accelerator gpu"),
        (["--accelerator", "mps"], "--accelerator mps"),
        (["--strategy", "bogus"], "--strategy bogus"),
        (["--devices", "0,1"], "--devices 0,1"),
        (["--accelerator", "bogus"], "--accelerator: must be one of"),
        (["--devices", "bogus"], "--devices: must be auto"),
        (["--num-nodes", "2"], "--num-nodes: 2 machines need a multi-machine launcher"),
        (["--base", "/nonexistent"], "--base: no such file or folder"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_unmeetable_hardware_is_one_line(tmp_path, capsys, monkeypatch, flags, words):
    if "gpu" in flags and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for name in ("MASTER_ADDR", "NODE_RANK", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(1)
    code = main([*QUICK, "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.ckpt"))
