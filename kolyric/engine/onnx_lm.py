"""A GPT-2 as an ONNX Runtime graph alone (``OnnxLM``), called as the loop calls a model.

The loop calls ``OnnxLM`` as it calls a model (``forward``, ``config``, ``device``); the cache it
returns is ONNX Runtime's (``onnx_decoder._OnnxPast``: crop and row copies for the look-ahead).
Anything else asked of it (beam search's ``generate``, scoring with labels, ``parameters()``)
goes to a PyTorch int8 model loaded from the same source on first use. ``onnx_model`` finds,
builds and opens the graphs.
"""

from __future__ import annotations

import logging
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime
    import torch
    from transformers import PreTrainedModel

    from kolyric.engine.onnx_decoder import _OnnxPast

_LOG = logging.getLogger(__name__)


class GraphConfig(types.SimpleNamespace):
    """The model's config.json values as attributes (what the loop reads: n_positions, vocab_size)."""

    def to_dict(self) -> dict:
        return dict(vars(self))


class OnnxLM:
    """A GPT-2 as an ONNX Runtime graph, called like its PyTorch model for generation."""

    kolyric_graph = True
    main_input_name = "input_ids"
    cache_name = "past_key_values"

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        config: GraphConfig,
        precision: str,
        n_params: int,
        weight_bytes: int,
        fallback: Callable[[str], PreTrainedModel] | None = None,
    ):
        from kolyric.engine.onnx_decoder import hold_cores

        self.session = session
        self.config = config
        self.precision = precision
        self.n_params = n_params
        self.weight_bytes = weight_bytes
        self._fallback = fallback
        self._torch_model: PreTrainedModel | None = None
        self._torch_lock = threading.Lock()
        self.n_layer = int(config.n_layer)
        self._heads = int(config.n_head)
        self._head_size = int(config.n_embd) // self._heads
        self.past_names = [f"past_{i}" for i in range(2 * self.n_layer)]
        self.output_names = [o.name for o in session.get_outputs()]
        self._cores = hold_cores(self)  # PyTorch's small operations between steps run on one thread

    @property
    def kolyric_decoder(self) -> OnnxLM:
        """What the loop calls for a decoding step: the graph itself (prompt included), where a
        PyTorch int8 model has an attached ``OnnxDecoder``."""
        return self

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.float32

    def get_input_embeddings(self) -> None:
        return None  # the tables are int8 or int4 inside the graph

    def get_output_embeddings(self) -> None:
        return None

    def eval(self) -> OnnxLM:
        return self

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: _OnnxPast | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
        **kwargs: object,
    ) -> types.SimpleNamespace:
        """Logits for every position of ``input_ids`` (the last ``logits_to_keep`` when it is set)
        and the cache after them. Calls the graph does not cover go to the PyTorch model."""
        import numpy as np
        import torch

        from kolyric.engine.onnx_decoder import (
            _OnnxPast,
            _ort_value,
            beyond_graph,
            empty_cache,
            run_graph,
            split_outputs,
        )

        foreign_cache = past_key_values is not None and not isinstance(past_key_values, _OnnxPast)
        if input_ids is None or beyond_graph(kwargs) or foreign_cache:
            model = self.torch_model()
            import inspect

            name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
            if past_key_values is not None:
                kwargs[name] = past_key_values
            return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, **kwargs)
        rows, length = int(input_ids.shape[0]), int(input_ids.shape[1])
        arrays = (
            past_key_values.arrays
            if past_key_values is not None
            else empty_cache(rows, self._heads, self._head_size, len(self.past_names))
        )
        total = int(arrays[0].shape()[2]) + length
        mask = (
            np.ascontiguousarray(attention_mask.cpu().numpy(), dtype=np.int64)
            if attention_mask is not None
            else np.ones((rows, total), dtype=np.int64)
        )
        feeds = {
            "input_ids": _ort_value(np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64)),
            "attention_mask": _ort_value(mask),
            **dict(zip(self.past_names, arrays)),
        }
        out = run_graph(self.session, self.output_names, feeds)
        logits = torch.from_numpy(out[0].numpy())
        if logits_to_keep:
            logits = logits[:, -int(logits_to_keep) :]
        past, top = split_outputs(out, len(self.past_names))
        return types.SimpleNamespace(logits=logits, past_key_values=past, kolyric_next=top)

    __call__ = forward

    def torch_model(self) -> PreTrainedModel:
        """The same model in PyTorch int8, loaded on first use (beam search, scoring)."""
        with self._torch_lock:
            if self._torch_model is None:
                _LOG.info("loading the PyTorch model beside the ONNX Runtime graph")
                self._torch_model = self._load_torch("int8")
            return self._torch_model

    def plain_model(self) -> PreTrainedModel:
        """The same model in PyTorch fp32, freshly loaded (to switch precision)."""
        return self._load_torch("fp32")

    def _load_torch(self, precision: str) -> PreTrainedModel:
        if self._fallback is None:
            raise AttributeError("this ONNX Runtime model has no PyTorch model to fall back to")
        return self._fallback(precision)

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.torch_model(), name)

    def check(self) -> None:
        """A two-token prompt and one step on two rows: logits of the right shape, finite."""
        import torch

        ids = torch.zeros((2, 2), dtype=torch.long)
        out = self.forward(input_ids=ids)
        out = self.forward(
            input_ids=ids[:, :1],
            attention_mask=torch.ones((2, 3), dtype=torch.long),
            past_key_values=out.past_key_values,
            logits_to_keep=1,
        )
        if tuple(out.logits.shape) != (2, 1, int(self.config.vocab_size)) or not bool(torch.isfinite(out.logits).all()):
            raise RuntimeError(f"bad logits from the ONNX graph: shape {tuple(out.logits.shape)}")


__all__ = ["GraphConfig", "OnnxLM"]
