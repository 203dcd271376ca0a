"""kolyric against llama.cpp and CTranslate2 on one model: decode speed, first token, start-up, memory.

    .venv/bin/python tests/benchmarks/bench_peers.py [--model DIR] [--tokens 128] [--reps 3]
                                                    [--threads 1 2] [--modes greedy sample]

The model is the KoGPT2-shaped GPT-2 of ``_kogpt2_shape`` (125M parameters, vocab 51,200,
random weights) unless ``--model`` names a GPT-2 folder. Each peer is converted from the same
weights once (cached beside the model):

- **kolyric** int8 and int4: ``load_model(..., precision=...)``, its ONNX Runtime graph built
  before timing; greedy through ``Generator.stream`` (kolyric's whole loop: processors, top-5,
  detokenizing).
- **llama.cpp** (``pip install llama-cpp-python``): a GGUF written with the ``gguf`` package from
  the model's tensors (llama.cpp's GPT-2 layout), then ``llama_model_quantize`` to Q8_0 and
  Q4_K_M; greedy through ``Llama.generate`` on token ids.
- **CTranslate2** (``pip install ctranslate2``): ``TransformersConverter`` with int8 weights;
  greedy through ``Generator.generate_tokens``.

A peer that is not installed is skipped, and the table says so. Every measurement is a fresh
process (so import and load are cold but for the OS's file cache), one engine after another in
turn, at 1 and 2 threads, greedy and sampling (``--modes``: top-k 50, top-p 0.92, temperature
0.9 in every engine, llama.cpp's default min-p of 0.05 turned off), ``--reps`` rounds; the table
shows medians. All generate exactly ``--tokens`` tokens after the same 32-token prompt. Greedy
agreement: the median number of leading tokens equal to fp32's greedy continuation (PyTorch
fp32, ``model.generate``), of ``--tokens``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ENGINES = ("kolyric int8", "kolyric int4", "llama.cpp Q8_0", "llama.cpp Q4_K_M", "CTranslate2 int8")
MODES = ("greedy", "sample")
"""Greedy, and sampling with top-k 50, top-p 0.92 and temperature 0.9 in every engine."""
NEEDS = {"llama.cpp": ("llama_cpp", "gguf"), "CTranslate2": ("ctranslate2",)}


def missing(engine: str) -> str | None:
    import importlib.util

    for family, modules in NEEDS.items():
        if engine.startswith(family):
            absent = [m for m in modules if importlib.util.find_spec(m) is None]
            if absent:
                return f"{family}: {', '.join(absent)} not installed"
    return None


# -- conversions (once per model) ------------------------------------------------------------------
def gguf_path(model_dir: Path, kind: str) -> Path:
    """The model as a GGUF of ``kind`` (F32, Q8_0 or Q4_K_M), written on first use."""
    out = model_dir.parent / f"{model_dir.name}.gguf" / f"model-{kind}.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    f32 = out.parent / "model-F32.gguf"
    if not f32.is_file():
        _write_gguf(model_dir, f32)
    if kind != "F32":
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[kind]
        params.nthread = 2
        if llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), params) != 0:
            raise RuntimeError(f"llama_model_quantize to {kind} failed")
    return out


def _write_gguf(model_dir: Path, out: Path) -> None:
    """llama.cpp's GPT-2 layout: fused QKV, GPT-2's Conv1D weights transposed to (out, in)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoConfig, PreTrainedTokenizerFast

    config = AutoConfig.from_pretrained(str(model_dir))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    weights = load_file(str(model_dir / "model.safetensors"))
    writer = gguf.GGUFWriter(str(out), "gpt2")
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    # The vocabulary as GPT-2 BPE pieces; ids go in and out directly, so llama.cpp's own
    # tokenizer never runs on text.
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([piece for piece, _ in vocab])
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocab))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("merges", [])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id or 0)
    writer.add_eos_token_id(tokenizer.eos_token_id or 0)
    names = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    prefix = "transformer." if any(k.startswith("transformer.") for k in weights) else ""
    top = {
        "wte.weight": "token_embd.weight",
        "wpe.weight": "position_embd.weight",
        "ln_f.weight": "output_norm.weight",
        "ln_f.bias": "output_norm.bias",
    }
    for key, value in weights.items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if name in top:
            writer.add_tensor(top[name], value.astype(np.float32))
        elif name.startswith("h."):
            _, layer, rest = name.split(".", 2)
            part, _, kind = rest.rpartition(".")
            if part not in names:
                continue  # attention bias buffers of older checkpoints
            data = value.astype(np.float32)
            if kind == "weight" and part not in ("ln_1", "ln_2"):
                data = np.ascontiguousarray(data.T)
            writer.add_tensor(f"blk.{layer}.{names[part]}.{kind}", data)
    if f"{prefix}wte.weight" in weights:
        writer.add_tensor("output.weight", weights[f"{prefix}wte.weight"].astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def ct2_dir(model_dir: Path) -> Path:
    out = model_dir.parent / f"{model_dir.name}.ct2-int8"
    if not (out / "model.bin").is_file():
        import ctranslate2

        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(str(out), quantization="int8", force=True)
    return out


# -- one measurement, in a fresh process ----------------------------------------------------------
CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
engine, model, threads, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
text, prompt = json.loads(sys.argv[5])
sample = sys.argv[6] == "sample"  # top-k 50, top-p 0.92, temperature 0.9 alike in every engine
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
ids, stamps = [], []
if engine.startswith("kolyric"):
    import torch
    torch.set_num_threads(threads)
    from kolyric.engine.loading import load_model
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator
    t1 = time.perf_counter()
    loaded = load_model(model, device="cpu", precision=engine.split()[1])
    gen = Generator(loaded)
    t2 = time.perf_counter(); mem = rss()
    settings = preset("greedy", min_length=n, max_length=n, seed=0)
    if sample:
        settings = settings.replace(strategy="sample", top_k=50, top_p=0.92, temperature=0.9)
    start = time.perf_counter()
    for event in gen.stream(GenerationRequest(text, settings=settings)):
        if hasattr(event, "token"):
            ids.append(event.token.token_id); stamps.append(time.perf_counter())
elif engine.startswith("llama.cpp"):
    import llama_cpp
    t1 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    t2 = time.perf_counter(); mem = rss()
    start = time.perf_counter()
    knobs = dict(top_k=50, top_p=0.92, temp=0.9) if sample else dict(top_k=1, top_p=1.0, temp=0.0)
    for tid in llm.generate(prompt, **knobs, min_p=0.0, repeat_penalty=1.0):  # min_p defaults to 0.05
        ids.append(int(tid)); stamps.append(time.perf_counter())
        if len(ids) == n:
            break
else:
    import ctranslate2
    t1 = time.perf_counter()
    gen = ctranslate2.Generator(model, device="cpu", compute_type="int8", intra_threads=threads)
    vocab = json.load(open(os.path.join(model, "vocabulary.json")))
    t2 = time.perf_counter(); mem = rss()
    start = time.perf_counter()
    knobs = dict(sampling_topk=50, sampling_topp=0.92, sampling_temperature=0.9) if sample else dict(sampling_topk=1)
    for step in gen.generate_tokens([vocab[i] for i in prompt], max_length=n, min_length=n, **knobs):
        ids.append(int(step.token_id)); stamps.append(time.perf_counter())
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rss_mb": mem, "ttft_s": stamps[0] - start,
                  "decode_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]), "ids": ids[:n],
                  "first_token_wall": time.time() - (time.perf_counter() - stamps[0])}), flush=True)
os._exit(0)  # CTranslate2's threads can abort the interpreter's teardown; the figures are out
"""


def measure(engine: str, model: str, threads: int, tokens: int, prompt: tuple[str, list[int]], mode: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, engine, model, str(threads), str(tokens), json.dumps(prompt), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if done.returncode < 0:  # a crash in the engine's own code (llama.cpp's quantized kernels on some CPUs)
        raise RuntimeError(f"{engine}: crashed ({signal.Signals(-done.returncode).name})")
    if done.returncode != 0:
        raise RuntimeError(f"{engine}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    got["start_to_first_token_s"] = got.pop("first_token_wall") - spawned  # the interpreter's start included
    return got


def fp32_greedy(model_dir: Path, prompt: list[int], tokens: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )
    return out[0, len(prompt) :].tolist()


def agreeing(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a GPT-2 folder (default: the KoGPT2-shaped one)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped_dir, prompt_text_of_tokens

    model_dir = args.model or kogpt2_shaped_dir()
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    text = prompt_text_of_tokens(tokenizer, 32)  # kolyric's prompt builder encodes it to these ids
    prompt = tokenizer.encode(text, add_special_tokens=False)
    print(f"model {model_dir}; 32-token prompt, {args.tokens} new tokens, {args.reps} interleaved reps; {load_line()}")
    targets, skipped = {}, {}
    for engine in args.engines:
        why = missing(engine)
        if why:
            skipped[engine] = why
            continue
        try:
            if engine.startswith("kolyric"):
                from kolyric.engine.loading import load_model

                load_model(str(model_dir), device="cpu", precision=engine.split()[1], progress=print)
                targets[engine] = str(model_dir)
            elif engine.startswith("llama.cpp"):
                targets[engine] = str(gguf_path(model_dir, engine.split()[1]))
            else:
                targets[engine] = str(ct2_dir(model_dir))
        except Exception as exc:  # noqa: BLE001 - a conversion that fails skips that peer, with the reason
            skipped[engine] = f"conversion failed: {str(exc).strip().splitlines()[-1][:160]}"
    for engine, why in skipped.items():
        print(f"skipped {engine}: {why}")
    reference = fp32_greedy(model_dir, prompt, args.tokens)
    runs: dict[tuple[str, int, str], list[dict]] = {}
    failed: dict[str, str] = {}
    """An engine's first failure, for the table's rows of engines that never ran."""
    for _ in range(args.reps):
        for threads in args.threads:
            for mode in args.modes:
                for engine, target in targets.items():
                    try:
                        got = measure(engine, target, threads, args.tokens, (text, prompt), mode)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"  {engine} {mode} at {threads} threads failed: {exc}")
                        failed.setdefault(engine, str(exc))
                        continue
                    runs.setdefault((engine, threads, mode), []).append(got)
    print(f"after: {load_line()}\n")
    rows = []
    for (engine, threads, mode), samples in runs.items():
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0] if k != "ids"}
        med["agree"] = statistics.median(agreeing(s["ids"], reference) for s in samples) if mode == "greedy" else None
        rows.append({"engine": engine, "threads": threads, "mode": mode, **med})
    header = (
        "| engine | threads | mode | decode tok/s | first token | import + load | start to first token "
        f"| RSS after load | greedy = fp32 (of {args.tokens}) |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["threads"], MODES.index(r["mode"]), ENGINES.index(r["engine"]))):
        agree = "–" if r["agree"] is None else f"{r['agree']:.0f}"
        print(
            f"| {r['engine']} | {r['threads']} | {r['mode']} | {r['decode_tok_s']:.1f} | {r['ttft_s'] * 1e3:.0f} ms "
            f"| {r['import_s']:.2f} + {r['load_s']:.2f} s | {r['start_to_first_token_s']:.2f} s "
            f"| {r['rss_mb']:.0f} MB "
            f"| {agree} |"
        )
    for engine, why in skipped.items():
        print(f"| {engine} | – | – | skipped: {why} | | | | | |")
    ran = {r["engine"] for r in rows}
    for engine, why in failed.items():
        if engine not in ran:
            print(f"| {engine} | – | – | failed every run: {why} | | | | | |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "skipped": skipped,
                    "failed": failed,
                    "load": load_line(),
                    "when": time.strftime("%Y-%m-%d %H:%M"),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
