"""The training run: ``TrainConfig`` → corpus → tokenizer/model → Lightning ``Trainer`` → export.

Output folder layout (``out``)::

  epoch=1-val_loss=2.29.ckpt   the best checkpoint so far (lowest val_loss; one kept)
  last.ckpt                    the latest state, for ``--resume`` (also written on cancel)
  model/                       the best model as a save_pretrained directory (safetensors + tokenizer)
  logs/                        Lightning's CSV metrics (loss, val_loss, lr, tokens_per_s)

``load_model(out)`` picks the best checkpoint; ``load_model(out / "model")`` and plain
``AutoModelForCausalLM.from_pretrained(out / "model")`` load the export.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from kolyric.atomic_files import sweep_stale_temps
from kolyric.training.config import (  # noqa: F401 - TrainConfig and its names are imported from here too
    EXPORT_DIRNAME,
    FINETUNE_LR,
    LAST_NAME,
    PRECISIONS,
    SCRATCH_LR,
    ConfigError,
    TrainConfig,
)

if TYPE_CHECKING:
    from pytorch_lightning import Trainer

    from kolyric.training.corpora import Corpus
    from kolyric.training.events import CancelToken, EventWriter


def _has_line_breaks(corpus: Corpus) -> bool:
    return any("\n" in ex.text for ex in corpus.train)


@dataclass
class TrainResult:
    best_ckpt: Path | None
    last_ckpt: Path | None
    export_dir: Path | None
    metrics: dict = field(default_factory=dict)
    cancelled: bool = False
    diverged: bool = False
    """Stopped because the loss stayed NaN/infinite (``cancelled`` is then true as well)."""


def train(config: TrainConfig, events: EventWriter | None = None, cancel: CancelToken | None = None) -> TrainResult:
    """Run the whole pipeline; user errors raise ``ConfigError``, ``CorpusError`` or ``ModelLoadError``."""
    problems = config.problems()
    if problems:
        raise ConfigError(problems)

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from kolyric.engine.loading import checkpoint_meta, load_model
    from kolyric.engine.window import context_window
    from kolyric.training.corpora import load_corpora
    from kolyric.training.dataset import (
        DynamicPaddingCollator,
        LengthGroupedBatchSampler,
        format_example,
        tokenize_examples,
    )
    from kolyric.training.events import AtomicCheckpointIO, CancelToken, EventWriter, LastCheckpoint, ProgressCallback
    from kolyric.training.module import CausalLMModule
    from kolyric.training.scratch import ModelShape, add_line_tokens, new_model, train_tokenizer

    events = events if events is not None else EventWriter(None, None)
    cancel = cancel if cancel is not None else CancelToken()
    started = time.perf_counter()
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for stale in sweep_stale_temps(out, "*.ckpt"):  # checkpoint writes of a run killed mid-save
        message = f"removed {stale.name}, left by an interrupted checkpoint write"
        events.emit("phase", phase="warning", message=message, say=message)
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the export's shard bar: the log says "exporting …" already
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if config.num_workers == 0 else "false")
    pl.seed_everything(config.seed, workers=True, verbose=False)

    # -- corpus --------------------------------------------------------------------------------
    names = " + ".join(config.corpus_specs)
    events.emit("phase", phase="corpus", message=f"reading {names}", say=f"reading {names} …")
    corpus = load_corpora(
        config.corpus_specs,
        root=config.corpus_dir,
        val_share=config.val_share,
        seed=config.seed,
        limit_train=config.limit_train,
        limit_val=config.limit_val,
        skip_bad=config.skip_bad_rows,
    )
    msg = f"{corpus.description}: {len(corpus.train):,} training, {len(corpus.val):,} validation examples"
    if corpus.skipped:
        msg += f"; skipped {corpus.skipped} malformed row(s)"
    events.emit(
        "phase",
        phase="corpus",
        message=msg,
        say=msg,
        train=len(corpus.train),
        val=len(corpus.val),
        skipped=corpus.skipped,
    )

    # -- tokenizer and model ---------------------------------------------------------------------
    base: str | None
    if config.resume:
        # Our checkpoints carry their config and tokenizer: the base is not needed to resume.
        loaded = load_model(config.resume_path, device="cpu")
        model, tokenizer, base = loaded.model, loaded.tokenizer, config.base
        events.emit(
            "phase",
            phase="model",
            message=f"resuming from {config.resume_path}",
            say=f"resuming from {config.resume_path}",
        )
    elif config.from_scratch:
        events.emit(
            "phase",
            phase="tokenizer",
            say="training a tokenizer on the corpus …",
            message=f"training a {config.tokenizer_kind} tokenizer, vocab {config.vocab_size}",
        )
        tokenizer = train_tokenizer(
            (format_example(ex) for ex in corpus.train), vocab_size=config.vocab_size, kind=config.tokenizer_kind
        )
        shape = ModelShape(
            n_layer=config.n_layer, n_embd=config.n_embd, n_head=config.n_head, n_positions=config.n_positions
        )
        model, base = new_model(tokenizer, shape, seed=config.seed), None
        events.emit("phase", phase="model", message=f"new GPT-2 {shape}", say=f"new GPT-2: {shape}")
    else:
        events.emit("phase", phase="model", message=f"loading {config.model}", say=f"loading {config.model} …")
        loaded = load_model(config.model, base=config.base, device="cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        base = config.model if loaded.kind in ("hub", "directory", "mini") else (config.base or None)
    window = context_window(model.config, default=0)  # 0: the config states none, nothing to check
    if window and config.max_seq_length > window:
        raise ConfigError([f"--max-seq-length: must be ≤ the model's context ({window}), got {config.max_seq_length}"])
    if not config.resume and _has_line_breaks(corpus) and add_line_tokens(tokenizer):
        # A base without line tokens (KoGPT2's vocabulary has none) would see every lyric as one line.
        model.resize_token_embeddings(len(tokenizer))
        message = "added line and stanza break tokens to the vocabulary, so lines are learned as lines"
        events.emit("phase", phase="model", message=message, say=message)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    meta = checkpoint_meta(model, tokenizer, base)

    # -- tokenize ------------------------------------------------------------------------------------
    def progress(done: int, total: int) -> None:
        events.emit("phase", phase="tokenize", done=done, total=total, message=f"tokenized {done:,}/{total:,}")

    t0 = time.perf_counter()
    train_data = tokenize_examples(corpus.train, tokenizer, config.max_seq_length, progress=progress)
    val_data = tokenize_examples(corpus.val, tokenizer, config.max_seq_length, progress=progress)
    msg = (
        f"tokenized {len(corpus.train):,} + {len(corpus.val):,} examples into {len(train_data):,} + "
        f"{len(val_data):,} rows ({train_data.n_tokens + val_data.n_tokens:,} tokens) in "
        f"{time.perf_counter() - t0:.1f} s; {train_data.coverage.summary()}"
    )
    cov = train_data.coverage
    events.emit(
        "phase",
        phase="tokenize",
        message=msg,
        say=msg,
        done=len(corpus.train),
        total=len(corpus.train),
        seconds=time.perf_counter() - t0,
        corpus_tokens=cov.corpus_tokens,
        trained_tokens=cov.trained_tokens,
        rows=len(train_data),
        row_tokens=cov.row_tokens,
        split_examples=cov.split_examples,
        cut_lines=cov.cut_lines,
    )
    cut_warning = train_data.coverage.warning(config.max_seq_length)
    if cut_warning:
        events.emit("phase", phase="warning", message=cut_warning, say=f"warning: {cut_warning}")

    collate = DynamicPaddingCollator(tokenizer.pad_token_id)
    loader_args = dict(collate_fn=collate, num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    if config.group_by_length:
        train_loader = DataLoader(
            train_data,
            **loader_args,
            batch_sampler=LengthGroupedBatchSampler(
                train_data.lengths(), config.batch_size, shuffle=True, seed=config.seed
            ),
        )
    else:
        train_loader = DataLoader(
            train_data,
            **loader_args,
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
        )
    val_loader = DataLoader(
        val_data,
        **loader_args,
        batch_sampler=LengthGroupedBatchSampler(val_data.lengths(), config.batch_size, shuffle=False),
    )

    # -- trainer -----------------------------------------------------------------------------------
    model.train()  # load_model hands it over in eval mode; Lightning keeps submodules' modes
    module = CausalLMModule(
        model,
        lr=config.peak_lr,
        warmup_steps=config.warmup_steps or 0,
        warmup_ratio=0.0 if config.warmup_steps is not None else config.warmup_ratio,
        meta=meta,
    )
    last_path = out / LAST_NAME

    def saved(path: Path) -> None:
        trainer = module.trainer
        kind = "last" if path.name == LAST_NAME else "best"
        if kind == "last":
            progress_cb.last_saved_step = trainer.global_step
            if progress_cb.stopped_early:
                kind = "interrupted"
        events.emit(
            "checkpoint",
            path=str(path),
            kind=kind,
            step=trainer.global_step,
            epoch=trainer.current_epoch,
            say=f"saved {path}",
        )

    progress_cb = ProgressCallback(events, cancel, last_path=last_path, min_interval_s=config.log_every_s)
    checkpoint_cb = LastCheckpoint(
        dirpath=out,
        filename="{epoch}-{val_loss:.2f}",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=True,
        enable_version_counter=False,
    )
    n_batches = max(1, len(train_loader))
    if isinstance(config.val_check_interval, int) and config.val_check_interval > n_batches:
        raise ConfigError(
            [
                f"--val-check-interval: a step count must be between 1 and the batches in an "
                f"epoch ({n_batches}), got {config.val_check_interval}"
            ]
        )
    plugins = [] if any(s in str(config.strategy) for s in ("deepspeed", "fsdp")) else [AtomicCheckpointIO(saved)]
    trainer = _make_trainer(
        pl,
        config,
        default_root_dir=out,
        max_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        precision=_precision(config.precision),
        accelerator=config.accelerator,
        devices=_devices(config.devices),
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        val_check_interval=config.val_check_interval,
        callbacks=[progress_cb, checkpoint_cb],
        plugins=plugins,
        gradient_clip_val=1.0,
        logger=CSVLogger(save_dir=out, name="logs"),
        log_every_n_steps=min(50, n_batches),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        # The length-grouped batch sampler shards by rank itself; plain shuffling uses Lightning's.
        use_distributed_sampler=not config.group_by_length,
    )
    n_params = sum(p.numel() for p in model.parameters())
    msg = (
        f"training {n_params / 1e6:.1f}M parameters · {n_batches:,} batches/epoch · "
        f"{trainer.accelerator.__class__.__name__.replace('Accelerator', '').lower()} · "
        f"precision {config.precision} · lr {config.peak_lr:g}"
    )
    events.emit("phase", phase="train", message=msg, say=msg, params=n_params)
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(config.resume_path) if config.resume else None)

    # -- export ----------------------------------------------------------------------------------------
    best = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else None
    last = last_path if last_path.is_file() else None
    source = best if best is not None and best.is_file() else last
    export_dir = None
    if source is not None and trainer.is_global_zero:
        events.emit("phase", phase="export", message=f"exporting {source.name}", say=f"exporting {source.name} …")
        export_dir = export_model(source, out / EXPORT_DIRNAME)
        events.emit(
            "checkpoint",
            path=str(export_dir),
            kind="export",
            step=trainer.global_step,
            epoch=trainer.current_epoch,
            say=f"exported {export_dir}",
        )
    val_loss = checkpoint_cb.best_model_score
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    result = TrainResult(
        best if best and best.is_file() else None,
        last,
        export_dir,
        metrics,
        cancelled=cancel.cancelled,
        diverged=progress_cb.diverged,
    )
    result.metrics["skipped_steps"] = module.skipped_steps
    if progress_cb.diverged:
        events.emit("error", message=cancel.reason, say=f"error: {cancel.reason}")
    events.emit(
        "finished",
        cancelled=cancel.cancelled,
        diverged=progress_cb.diverged,
        skipped_steps=module.skipped_steps,
        best_ckpt=result.best_ckpt,
        last_ckpt=last,
        export_dir=export_dir,
        val_loss=float(val_loss) if val_loss is not None else None,
        step=trainer.global_step,
        elapsed_s=time.perf_counter() - started,
        say=("cancelled; " if cancel.cancelled else "done; ")
        + f"best {result.best_ckpt or '-'}, model in {export_dir or '-'}",
    )
    return result


# Lightning warnings that say nothing useful about a kolyric run.
_QUIET = (
    r"Checkpoint directory .* exists and is not empty",  # out holds the export and logs
    r".*could not find the monitored key",  # a cancel before the first validation
    r".*isinstance\(treespec, LeafSpec\)",
    r".*does not have many workers",  # --num-workers is the user's choice
    r".*The number of training batches .* is smaller than the logging interval",
    r".*`training_step` returned `None`",  # a skipped non-finite step, reported as an event
    r".*resuming from a checkpoint that ended before the epoch ended",  # by design after a cancel
)


def _make_trainer(pl: ModuleType, config: TrainConfig, **kwargs: object) -> Trainer:
    """Lightning's ``Trainer``; a hardware choice this machine cannot meet (no GPU, an unknown
    strategy, more devices than there are) is a ``ConfigError`` naming the flags, not a traceback."""
    try:
        return pl.Trainer(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Lightning raises ValueError, TypeError, MisconfigurationException
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigError(
            [
                f"--accelerator {config.accelerator} --devices {config.devices} "
                f"--strategy {config.strategy} --precision {config.precision}: {text}"
            ]
        ) from None


def _devices(value: str | int) -> str | int | list[int]:
    if isinstance(value, str) and "," in value:
        return [int(part) for part in value.strip("[] ").split(",") if part.strip()]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _precision(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def export_model(checkpoint: Path, target: Path, *, base: str | None = None) -> Path:
    """Write ``checkpoint``'s model and tokenizer as a save_pretrained folder, replacing ``target``
    only once the new one is complete."""
    from kolyric.engine.loading import load_model

    loaded = load_model(checkpoint, base=base, device="cpu")
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    loaded.model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)
    return target
