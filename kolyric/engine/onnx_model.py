"""int8 and int4 models that are ONNX Runtime graphs alone: no PyTorch model is built to run them.

``load_model(..., precision="int8" | "int4" | "auto")`` on a CPU, with ``onnxruntime`` installed
and a GPT-2, gives a ``LoadedModel`` whose ``model`` is an ``OnnxLM``: the graph of
``kolyric.engine.onnx_graph`` (prompt and decoding steps alike), its config, and nothing else of
the weights. Once a model's graph is built, a load goes straight to it:

- ``weights_identity`` names the files the weights come from (path, size and modification time
  of every file of a model folder, a checkpoint and its base, a hub model's cached blobs) and the
  library versions; an **index** entry under that name (``onnx_cache_dir()/index/``) points to
  the graph folder and keeps the model's config, its tokenizer files and the load's notices;
- ``load_indexed`` reads the entry and the tokenizer and opens the graph: no ``transformers``
  at all is imported (the tokenizer is read with ``tokenizers``: ``tokenizer_files``) and no
  fp32 weights are read; ONNX Runtime opens the graph in a thread while torch is imported (a
  KoGPT2-sized model is ready in about two seconds, the graph holding its int8 weights once:
  ~165 MB);
- on a miss (a first load, a file changed, another library version) the model is loaded in
  PyTorch as before; a graph already built for the same weights (found by a digest of the
  weights themselves) is used as it is, else built once, and the index entry is written;
- a damaged entry is ignored and a damaged graph (wrong size, refused by ONNX Runtime) dropped,
  so that load takes the slow path and builds it again.

The graph itself runs as an ``OnnxLM`` (``onnx_lm``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.engine import onnx_graph, onnx_session
from kolyric.engine.onnx_lm import GraphConfig, OnnxLM

if TYPE_CHECKING:
    import onnxruntime
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from kolyric.engine.loading import LoadedModel
    from kolyric.engine.tokenizer_files import FastTokenizer

INDEX = "index"
ENTRY = "entry.json"
_LOG = logging.getLogger(__name__)


# -- the index: from the source's files to its graph -------------------------------------------------
def runtime_available() -> bool:
    """onnxruntime is installed and ``$KOLYRIC_INT8_BACKEND`` does not ask for PyTorch's."""
    import importlib.util

    backend = (os.environ.get("KOLYRIC_INT8_BACKEND") or "auto").strip().lower()
    return backend != "torch" and importlib.util.find_spec("onnxruntime") is not None


def weights_identity(spec: str, base: str | None) -> str | None:
    """A digest naming the files behind ``spec`` (and ``base``) as they are now, or None when
    they cannot be named cheaply (a folder of checkpoints, a hub model not in the cache)."""
    files = _source_files(spec)
    if files is None:
        return None
    if len(files) == 1 and files[0].suffix != ".json":  # a checkpoint: its base's files count too
        from kolyric.engine.loading import DEFAULT_CHECKPOINT_BASE

        files += _source_files(base or DEFAULT_CHECKPOINT_BASE) or []
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{onnx_graph.versions()}\0base={base}\0".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _source_files(spec: str) -> list[Path] | None:
    from kolyric.engine.loading import _HUB_ID_RE, MINI_PATH, looks_like_path

    path = MINI_PATH if spec.strip().lower() in ("mini", "kolyric-mini") else Path(spec).expanduser()
    try:
        if path.is_file():
            return [path]
        if path.is_dir():
            if not (path / "config.json").is_file():
                return None
            return sorted(p for p in path.iterdir() if p.is_file())
    except OSError:
        return None
    if looks_like_path(spec) or not _HUB_ID_RE.match(spec):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = []
    for name in (
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        try:
            hit = try_to_load_from_cache(spec, name)
        except Exception:  # noqa: BLE001 - a broken cache is no cache
            return None
        if isinstance(hit, str):
            found.append(Path(hit))
    return found if found and found[0].name == "config.json" else None


def _entry_dir(key: str) -> Path:
    return onnx_graph.onnx_cache_dir() / INDEX / key


def load_fast(spec: str, base: str | None, device: str, precision: str, network_timeout: float) -> LoadedModel | None:
    """The model straight from its cached graph when it would run on the CPU with ONNX Runtime
    and has one (``load_indexed``), else None."""
    if not runtime_available():
        return None
    from kolyric.engine.placement import describe, resolve_device, surely_cpu

    if device == "auto" and not surely_cpu() and resolve_device("auto") != "cpu":
        return None
    loaded = load_indexed(spec, base, precision, torch_loader(spec, base, network_timeout))
    if loaded is not None:
        describe(loaded, "cpu", loaded.model.precision, loaded.n_params)
    return loaded


def torch_loader(spec: str, base: str | None, network_timeout: float) -> Callable[[str], PreTrainedModel]:
    """Loads ``spec`` as a PyTorch model in fp32 or PyTorch int8 (what a graph falls back to)."""

    def load(precision: str) -> PreTrainedModel:
        from kolyric.engine.loading import _load_any
        from kolyric.engine.placement import place

        loaded = _load_any(spec, base=base, network_timeout=network_timeout)
        place(loaded, "cpu", precision, int8_backend="torch")
        return loaded.model

    return load


def load_indexed(
    spec: str,
    base: str | None,
    precision: str,
    fallback: Callable[[str], PreTrainedModel],
) -> LoadedModel | None:
    """The model from its index entry and graph, or None (not indexed, or damaged: load it the
    slow way, which builds what is missing)."""
    from kolyric.engine.loading import LoadedModel

    if not runtime_available():
        return None
    key = weights_identity(spec, base)
    if key is None:
        return None
    folder = _entry_dir(key)
    try:
        entry = json.loads((folder / ENTRY).read_text(encoding="utf-8"))
        graph_dir = onnx_graph.onnx_cache_dir() / str(entry["graph"])
        n_params = int(entry["n_params"])
        config = GraphConfig(**dict(entry["config"]))
        kind, notices = str(entry["kind"]), [str(n) for n in entry.get("notices", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if precision == "auto":
        from kolyric.engine.quantize import auto_precision_for

        precision = auto_precision_for(n_params, "cpu")
        if precision not in onnx_graph.GRAPH_PRECISIONS:
            return None
    if not onnx_graph.graph_ok(graph_dir, precision):
        return None
    # ONNX Runtime reads and optimizes the graph in C++, without the GIL, while torch (which the
    # decoding loop needs) is imported and the tokenizer read here: ~0.3 s of a KoGPT2's start
    from concurrent.futures import ThreadPoolExecutor

    threads = _session_threads()
    with ThreadPoolExecutor(1, thread_name_prefix="kolyric-graph") as pool:
        opening = pool.submit(_open_session, graph_dir, precision, threads)
        tokenizer = read_entry_tokenizer(folder)
        import torch  # noqa: F401 - the graph's model (OnnxLM) steps through torch tensors

        session = opening.result()
    if tokenizer is None or session is None:
        return None
    lm = open_graph(graph_dir, precision, config, n_params, fallback, session if threads == _torch_threads() else None)
    if lm is None:
        return None
    return LoadedModel(lm, tokenizer, source=spec, kind=kind, description="", notices=notices)


def read_entry_tokenizer(folder: Path) -> PreTrainedTokenizerFast | FastTokenizer | None:
    """The tokenizer an index entry keeps, read with the ``tokenizers`` library alone when its
    files allow (``tokenizer_files``: no transformers import), else through transformers; None
    when the entry is damaged (the slow path writes it again)."""
    from kolyric.engine import tokenizer_files
    from kolyric.engine.loading import fill_special_tokens

    try:
        direct = tokenizer_files.read(folder)
        if direct is not None:
            return direct
        from transformers import PreTrainedTokenizerFast

        return fill_special_tokens(PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True))
    except Exception:  # noqa: BLE001 - a damaged entry
        return None


def _session_threads() -> int:
    """The threads the graph's session gets: PyTorch's (``_cpu_threads``), known without importing
    torch in a fresh process as PyTorch finds them: $OMP_NUM_THREADS up to the physical cores,
    else the physical cores. Checked against torch's own count once torch is imported; a
    session opened with another count is opened again."""
    import sys

    if "torch" in sys.modules:
        return _torch_threads()
    cores = _physical_cores()
    try:
        asked = int(os.environ.get("OMP_NUM_THREADS", "").strip())
    except ValueError:
        asked = 0
    return min(asked, cores) if asked > 0 else cores


def _physical_cores() -> int:
    """Cores, not hardware threads (PyTorch's default count), from /proc/cpuinfo; else CPUs."""
    logical = max(1, os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return logical
    cores, package = set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            cores.add((package, value.strip()))
    return len(cores) if 0 < len(cores) < logical else logical


def _torch_threads() -> int:
    from kolyric.engine.onnx_decoder import _cpu_threads

    return _cpu_threads()


def _open_session(graph_dir: Path, precision: str, threads: int) -> onnxruntime.InferenceSession | None:
    try:
        return onnx_session.open_session(graph_dir / onnx_graph.graph_name(precision), threads)
    except Exception:  # noqa: BLE001 - torn files, a graph this runtime refuses: the slow path drops it
        return None


def open_graph(
    graph_dir: Path,
    precision: str,
    config: GraphConfig,
    n_params: int,
    fallback: Callable[[str], PreTrainedModel] | None,
    session: onnxruntime.InferenceSession | None = None,
) -> OnnxLM | None:
    """The graph as an ``OnnxLM`` (on ``session`` when one is open already) after a one-step
    check; a graph that fails it is dropped."""
    path = graph_dir / onnx_graph.graph_name(precision)
    try:
        if session is None:
            session = onnx_session.open_session(path, _torch_threads())
        lm = OnnxLM(session, config, precision, n_params, onnx_graph.weight_bytes(graph_dir, precision), fallback)
        lm.check()
        return lm
    except Exception:  # noqa: BLE001 - torn files, a graph this runtime refuses
        onnx_graph.drop_graph(graph_dir, precision)
        return None


def graph_for(
    loaded: LoadedModel,
    precision: str,
    spec: str,
    base: str | None,
    fallback: Callable[[str], PreTrainedModel],
    progress: Callable[[str], None] | None = None,
) -> tuple[OnnxLM | None, str | None]:
    """``loaded.model``'s graph in ``precision`` (built once per weights) as an ``OnnxLM``, with
    the index entry written for the next load; or None and a notice saying why not."""
    from kolyric.engine.onnx_decoder import first_line

    model = loaded.model
    if getattr(getattr(model, "config", None), "model_type", None) != "gpt2":
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        asked = precision == "int4" or os.environ.get("KOLYRIC_INT8_BACKEND", "").strip().lower() == "onnxruntime"
        return None, f"{precision}: ONNX Runtime graphs cover GPT-2 models, not {kind}" if asked else None
    try:
        digest = onnx_graph.content_digest(model)
        graph_dir = onnx_graph.onnx_cache_dir() / digest
        n_params = sum(p.numel() for p in model.parameters())
        config = GraphConfig(**_plain(model.config.to_dict()))
        lm = (
            open_graph(graph_dir, precision, config, n_params, fallback)
            if onnx_graph.graph_ok(graph_dir, precision)
            else None
        )
        if lm is None:
            onnx_graph.build(model, graph_dir, precision, progress)
            lm = open_graph(graph_dir, precision, config, n_params, fallback)
            if lm is None:
                raise RuntimeError("the graph just built does not run")
    except Exception as exc:  # noqa: BLE001 - no graph means: PyTorch int8
        return None, f"{precision}: ONNX Runtime graph unavailable ({first_line(exc)})"
    key = weights_identity(spec, base)
    if key is not None:
        _write_entry(key, digest, loaded, n_params, config)
    return lm, None


def _plain(config: dict) -> dict:
    """The config's JSON-safe values (the index entry keeps them)."""
    return json.loads(json.dumps(config, default=str))


def _write_entry(key: str, digest: str, loaded: LoadedModel, n_params: int, config: GraphConfig) -> None:
    """The index entry, written whole in a temporary folder and moved into place."""
    import tempfile

    index = onnx_graph.onnx_cache_dir() / INDEX
    try:
        index.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=index, prefix=".entry-"))
        loaded.tokenizer.save_pretrained(str(work))
        entry = {
            "graph": digest,
            "n_params": n_params,
            "config": config.to_dict(),
            "kind": loaded.kind,
            "source": loaded.source,
            "notices": list(loaded.notices),
        }
        (work / ENTRY).write_text(json.dumps(entry, ensure_ascii=False, indent=1), encoding="utf-8")
        final = index / key
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
    except OSError as exc:  # a read-only cache: every load takes the slow path, nothing breaks
        _LOG.info("could not write the ONNX index entry: %s", exc)
        shutil.rmtree(locals().get("work", index / ".none"), ignore_errors=True)


def is_graph_model(model: object) -> bool:
    return bool(getattr(type(model), "kolyric_graph", False))


__all__ = [
    "graph_for",
    "is_graph_model",
    "load_fast",
    "load_indexed",
    "open_graph",
    "runtime_available",
    "torch_loader",
    "weights_identity",
]
