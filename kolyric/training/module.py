"""The LightningModule: a thin wrapper around a Hugging Face causal LM.

The model is held as ``self.model``, so checkpoint ``state_dict`` keys read ``model.…`` exactly
like the tutorial's ratsnlp ``GenerationTask`` checkpoints, and ``load_model`` reads both.
Each checkpoint also carries ``checkpoint["kolyric"]`` (config + tokenizer) so it loads
without its base model, and ``checkpoint["kolyric_weights"]``, a SHA-256 of its tensors that
every load verifies.

Optimiser: AdamW (weight decay 0.01, none on biases and LayerNorm weights). Learning rate:
linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to ``lr × 0.1`` at the
last step. The tutorial's ratsnlp used no warm-up and ExponentialLR ×0.9 per epoch; a warm-up
keeps the first updates of a pretrained model (or a fresh one) from blowing up, and a per-step
decay works the same for 1 epoch or 10. The floor of 10 % keeps a resumed run learning.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch

from kolyric.engine.integrity import WEIGHTS_DIGEST_KEY, weights_digest
from kolyric.engine.loading import CHECKPOINT_META_KEY

if TYPE_CHECKING:
    from transformers import PreTrainedModel

MIN_LR_RATIO = 0.1
WEIGHT_DECAY = 0.01


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = MIN_LR_RATIO) -> float:
    """The learning-rate multiplier at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CausalLMModule(pl.LightningModule):
    """Trains ``model`` on batches of ``input_ids``/``attention_mask``/``labels``."""

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        lr: float = 5e-5,
        warmup_steps: int = 0,
        warmup_ratio: float = 0.0,
        meta: dict | None = None,
    ) -> None:
        super().__init__()
        if getattr(model, "loss_type", "") is None:
            # GPT-2's class name names no loss; transformers then falls back to this one, with a
            # warning in every run's log that says nothing the user can act on.
            model.loss_type = "ForCausalLM"
        self.model = model
        self.meta = meta
        self.save_hyperparameters(ignore=["model", "meta"])
        self._val_sum = 0.0
        self._val_tokens = 0
        self.skipped_steps = 0
        """Steps skipped because the loss was NaN or infinite."""
        self.nonfinite_streak = 0
        """Such steps in a row, up to now (the runner gives up after too many)."""

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss = self.model(**batch).loss
        bad = not bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # all processes must skip together
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            # One bad batch must not poison the weights: returning None skips backward and the
            # optimiser step. A run of them means divergence; the progress callback stops it.
            self.skipped_steps += 1
            self.nonfinite_streak += 1
            return None
        self.nonfinite_streak = 0
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._val_tokens = torch.zeros((), device=self.device, dtype=torch.float64)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.model(**batch).loss
        # The model averages over predicted tokens; weight by their number so val_loss is the
        # mean over all tokens of the split, not a mean of batch means.
        n = (batch["labels"][:, 1:] != -100).sum()
        self._val_sum += loss.double() * n
        self._val_tokens += n

    def on_validation_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._val_tokens, reduce_op="sum")
        self.log("val_loss", (total / count.clamp(min=1)).float(), prog_bar=True)

    # -- optimiser --------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "ln" in name or "norm" in name.lower() else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = self.hparams.warmup_steps or int(total * self.hparams.warmup_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.meta is not None:
            checkpoint[CHECKPOINT_META_KEY] = self.meta
        # Lightning calls this after the state_dict is in place: the digest covers exactly the
        # tensors written, and every load checks it (a flipped bit is refused, by file name).
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            checkpoint[WEIGHTS_DIGEST_KEY] = weights_digest(state)
