"""The int8 CPU path, measured. One run prints:

1. the machine's memory bandwidth as a large (1 GiB) tensor copy, counting the bytes read and
   written (STREAM's convention); beside it the stricter figures of the same
   tensor summed and multiplied by a vector (bytes read), and the copy counting bytes read only
   (half the traffic: a lenient figure). Each precision's roofline is bandwidth / bytes of
   weights one token reads;
2. on a KoGPT2-shaped model (random weights, vocab 51,200, 12 layers, width 768): tokens/s and
   time to first token (32-token prompt) of plain ``model.generate`` fp32, kolyric fp32 and
   kolyric int8, greedy and combined, interleaved; each as a multiple of plain generate fp32
   and as a share of its roofline;
3. kolyric's per-token breakdown: forward pass vs logits processors, incremental detokenizer
   and the rest of the step (softmax, top-5, sampling, bookkeeping, the event itself);
4. quality on a briefly trained small model (kolyric-mini when it is installed, else one
   trained here and cached): bits per character of fp32 and int8 on 500 NSMC test reviews,
   and how many greedy continuations of a fixed prompt set agree on their first 10 tokens;
5. the forward step alone (what kolyric's loop calls per token) for each.

int8 is measured on both of its backends: PyTorch's dynamic quantization alone, and decoding
steps on ONNX Runtime (when onnxruntime is installed), the comparison behind the design choice.

    python tests/benchmarks/bench_int8.py [--tokens 64] [--reps 5] [--threads N] [--clock cpu]
                                          [--skip-speed] [--skip-quality] [--json OUT]

On a busy machine, ``--clock cpu`` (one thread, this thread's CPU time) keeps other processes'
time slices out of the figures.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import bench_generation as bg
from tests.benchmarks._kogpt2_shape import CACHE, kogpt2_shaped_dir, nsmc_reviews, prompt_text_of_tokens


# -- 1. bandwidth --------------------------------------------------------------------------------
def read_bandwidth(gib: float = 1.0, reps: int = 5) -> dict:
    """GB/s, best of ``reps``, over a 1 GiB float32 tensor: copying it into another (``copy_rw``:
    bytes read + bytes written, 2 GiB a copy; ``copy_read``: bytes read only), summing it and a
    matrix-vector product over it (bytes read: what a decoding step does with its weights).
    ``roofline_gb_s``, the figure the goals use, is the copy (read + written)."""
    import torch

    n = int(gib * 2**30) // 4
    src = torch.ones(n)
    dst = torch.empty_like(src)
    matrix, vector = src.view(8192, -1), torch.ones(n // 8192)
    best = {"sum": math.inf, "copy": math.inf, "matvec": math.inf}
    for _ in range(reps):
        for name, fn in (("sum", src.sum), ("copy", lambda: dst.copy_(src)), ("matvec", lambda: matrix.mv(vector))):
            t = bg.clock()
            fn()
            best[name] = min(best[name], bg.clock() - t)
    rates = {f"{name}_gb_s": n * 4 / seconds / 1e9 for name, seconds in best.items()}
    rates["copy_rw_gb_s"] = 2 * rates.pop("copy_gb_s")
    rates["copy_read_gb_s"] = rates["copy_rw_gb_s"] / 2
    return {"roofline_gb_s": rates["copy_rw_gb_s"], **rates}


BANDWIDTHS = (
    ("copy_rw", "copy, read+written"),
    ("sum", "sum, read"),
    ("matvec", "matrix-vector, read"),
    ("copy_read", "copy, read only"),
)


# -- 3. breakdown ------------------------------------------------------------------------------------
class _Timer:
    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0


def breakdown(generator: Any, text: str, settings: Any) -> dict:
    """Per-token milliseconds of the decoding steps after the first, split by where they go.

    The forward pass is timed by wrapping what the loop calls (the model, or the ONNX Runtime
    decoder), each logits processor by wrapping it inside the chain the loop builds (its
    ``pool`` too: the top-k that hands sampling its survivors), the detokenizer by wrapping its
    ``push``; the rest is the step's remainder (softmax, top-5, argmax or sampling, bookkeeping,
    the event itself). ``per_processor_us`` has each processor's microseconds per token.
    """
    from kolyric.engine import processors as lean
    from kolyric.engine import results as stream_mod
    from kolyric.engine.prompt import Detokenizer

    forward, detok = _Timer(), _Timer()
    per_processor: dict[str, _Timer] = {}
    model = generator.model
    decoder = getattr(model, "kolyric_decoder", None)
    inner = decoder if decoder is not None else model

    def timed_forward(*args: Any, **kwargs: Any) -> Any:
        t = bg.clock()
        out = inner(*args, **kwargs)
        forward.total += bg.clock() - t
        forward.calls += 1
        return out

    class Timed:
        """One processor, timed; ``pool`` is there only when the processor has one."""

        def __init__(self, processor: Any):
            self.processor = processor
            self.timer = per_processor.setdefault(type(processor).__name__, _Timer())

        def _timed(self, fn: Any, *args: Any) -> Any:
            t = bg.clock()
            out = fn(*args)
            self.timer.total += bg.clock() - t
            self.timer.calls += 1
            return out

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return self._timed(self.processor, input_ids, scores)

        def __getattr__(self, name: str) -> Any:
            if name != "pool":
                raise AttributeError(name)
            pool = self.processor.pool  # AttributeError when it has none
            return lambda input_ids, scores: self._timed(pool, input_ids, scores)

    original_processors = generator.processors
    original_push = Detokenizer.push

    def timed_push(self: Any, token_id: int) -> str:
        t = bg.clock()
        out = original_push(self, token_id)
        detok.total += bg.clock() - t
        detok.calls += 1
        return out

    model.kolyric_decoder = timed_forward  # what the loop calls for each step
    generator.processors = lambda *a, **k: lean.ProcessorChain(Timed(p) for p in original_processors(*a, **k))
    Detokenizer.push = timed_push
    try:
        events = []
        first: dict[str, float] = {}
        for event in generator.stream(stream_mod.GenerationRequest(text, settings=settings)):
            if isinstance(event, stream_mod.TokenEvent):
                events.append(bg.clock())
                if len(events) == 1:  # everything before this belongs to the prompt and token 1
                    first = {
                        "forward": forward.total,
                        "detokenizer": detok.total,
                        **{name: timer.total for name, timer in per_processor.items()},
                    }
    finally:
        if decoder is not None:
            model.kolyric_decoder = decoder
        else:
            del model.kolyric_decoder
        del generator.processors
        Detokenizer.push = original_push
    steps = len(events) - 1
    step_ms = (events[-1] - events[0]) / steps * 1e3
    per_us = {name: (timer.total - first.get(name, 0.0)) / steps * 1e6 for name, timer in per_processor.items()}
    parts = {
        "forward": (forward.total - first["forward"]) / steps * 1e3,
        "processors": sum(per_us.values()) / 1e3,
        "detokenizer": (detok.total - first["detokenizer"]) / steps * 1e3,
    }
    parts["rest"] = step_ms - sum(parts.values())
    return {
        "step_ms": step_ms,
        **parts,
        "outside_forward_share": 1 - parts["forward"] / step_ms,
        "per_processor_us": per_us,
    }


# -- 4. quality ----------------------------------------------------------------------------------------
def quality_model_dir(spec: str | None, steps: int) -> Path:
    """The model quality is measured on: ``spec``, else kolyric-mini, else a small one trained here."""
    from kolyric.engine.loading import MINI_PATH

    if spec:
        return Path(spec)
    if (MINI_PATH / "config.json").is_file():
        return MINI_PATH
    return train_small_model(CACHE / f"quality-small-v2k-{steps}", steps)


def train_small_model(out: Path, steps: int) -> Path:
    """A 4-layer, 256-wide GPT-2 trained on NSMC with polarity prefixes (a GPU when there is one)."""
    if (out / "config.json").is_file():
        return out
    import torch

    from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

    texts = list(nsmc_reviews("train", limit=80000))
    labels = _nsmc_labels("train", len(texts))
    texts = [("긍정 " if y else "부정 ") + t for t, y in zip(texts, labels)]
    tokenizer = train_tokenizer(texts, vocab_size=2000, kind="metaspace")
    model = new_model(tokenizer, ModelShape(n_layer=4, n_embd=256, n_head=4, n_positions=128), seed=7)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    torch.manual_seed(7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.05)
    batch = 32
    started = time.perf_counter()
    for step in range(steps):
        rows = [texts[(step * batch + i) % len(texts)] + tokenizer.eos_token for i in range(batch)]
        enc = tokenizer(rows, return_tensors="pt", padding=True, truncation=True, max_length=48).to(device)
        labels_t = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            print(
                f"  [train] step {step + 1}/{steps} loss {loss.item():.3f} "
                f"({time.perf_counter() - started:.0f} s, {device})",
                flush=True,
            )
    model.to("cpu").eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def _nsmc_labels(split: str, limit: int) -> list[int]:
    from tests.benchmarks._kogpt2_shape import NSMC_DIR

    labels = []
    with (NSMC_DIR / f"ratings_{split}.txt").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1].strip():
                labels.append(int(parts[2]))
                if len(labels) >= limit:
                    break
    return labels


def bits_per_char(loaded: Any, texts: list[str], batch: int = 32, stepwise: bool = False) -> float:
    """Sum of the model's negative log-likelihood, in bits, of each text's tokens after the
    beginning-of-text token, over the texts' characters. ``stepwise`` scores one token at a time
    over the KV cache, through what kolyric's loop calls (the ONNX Runtime decoder, if any)."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    limit = int(getattr(model.config, "n_positions", 1024))
    nll = 0.0
    chars = 0
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            chunk = texts[i : i + batch]
            seqs = [[bos] + tok.encode(t, add_special_tokens=False)[: limit - 1] for t in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), tok.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            if stepwise:
                logits = _stepwise_logits(model, ids)
            else:
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
            nll -= float((logp * mask[:, 1:]).sum())
            chars += sum(len(t) for t in chunk)
    return nll / math.log(2) / chars


def _stepwise_logits(model: Any, ids: Any) -> Any:
    """Logits for positions 0 .. width-2 of right-padded ``ids``, one token per call over the
    cache (padding comes after each row's text, so it never reaches a scored position)."""
    import torch

    forward = getattr(model, "kolyric_decoder", None) or model
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rows, width = ids.shape
    out = model(input_ids=ids[:, :1], attention_mask=torch.ones(rows, 1, dtype=torch.long), use_cache=True)
    logits = [out.logits[:, -1].float()]
    past = getattr(out, cache_name, None)
    for t in range(1, width - 1):
        out = forward(
            input_ids=ids[:, t : t + 1],
            attention_mask=torch.ones(rows, t + 1, dtype=torch.long),
            use_cache=True,
            logits_to_keep=1,
            **{cache_name: past},
        )
        logits.append(out.logits[:, -1].float())
        past = getattr(out, cache_name)
    return torch.stack(logits, dim=1)


def greedy_agreement(fp32: Any, int8: Any, prompts: list[str], tokens: int = 10) -> tuple[int, float]:
    """How many prompts' greedy continuations (kolyric's loop) agree on their first ``tokens``
    tokens, and the mean length of the agreeing prefix."""
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    settings = preset("greedy", min_length=tokens, max_length=tokens, seed=0)
    same, prefix = 0, 0
    g32, g8 = Generator(fp32), Generator(int8)
    for prompt in prompts:
        a = g32.generate(GenerationRequest(prompt, settings=settings)).candidates[0].token_ids
        b = g8.generate(GenerationRequest(prompt, settings=settings)).candidates[0].token_ids
        same += a[:tokens] == b[:tokens]
        prefix += next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return same, prefix / len(prompts)


def agreement_prompts(count: int = 30, skip: int = 500) -> list[str]:
    """Fixed prompts: the first three words of NSMC test reviews of four words or more, taken
    after the ``skip`` reviews the bits-per-character figure uses."""
    prompts = []
    for i, text in enumerate(nsmc_reviews("test")):
        words = text.split()
        if i >= skip and len(words) >= 4:
            prompts.append(" ".join(words[:3]))
            if len(prompts) == count:
                break
    return prompts


# -- 5. the forward step alone ------------------------------------------------------------------------
def forward_steps(models: dict[str, Any], reps: int, threads: int, steps: int = 64) -> dict[str, float]:
    """Median milliseconds of one decoding step (batch 1, KV cache of 32 to 32 + ``steps``
    positions) through what kolyric's loop calls for each model, interleaved over ``reps``."""
    import torch

    def one(model: Any) -> float:
        forward = getattr(model, "kolyric_decoder", None) or model
        cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        ids = torch.randint(0, model.config.vocab_size, (1, 32))
        times = []
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            past = getattr(out, cache_name, None)
            for i in range(steps):
                mask = torch.ones(1, 33 + i, dtype=torch.long)
                t = bg.clock()
                out = forward(
                    input_ids=ids[:, -1:], attention_mask=mask, use_cache=True, logits_to_keep=1, **{cache_name: past}
                )
                times.append(bg.clock() - t)
                past = getattr(out, cache_name)
        return bg.median(times) * 1e3

    results: dict[str, list[float]] = {name: [] for name in models}
    for rep in range(reps + 1):
        for name, model in models.items():
            ms = at_threads(name, threads, one)(model)
            if rep:
                results[name].append(ms)
    return {name: bg.median(v) for name, v in results.items()}


# -- main ------------------------------------------------------------------------------------------------
def at_threads(label: str, threads: int, fn: Any) -> Any:
    """``fn`` run with the torch threads its setup uses: ``threads``, except int8 on ONNX Runtime,
    whose decoder gives the CPU threads to ONNX Runtime and keeps one for PyTorch."""
    import torch

    wanted = 1 if label.endswith("onnxruntime") else threads

    def run(*args: Any, **kwargs: Any) -> Any:
        previous = torch.get_num_threads()
        torch.set_num_threads(wanted)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return run


def load_int8(path: Path, backend: str) -> Any:
    """The model at ``path`` in int8 on the CPU, decoding steps on ``backend`` (torch or onnxruntime)."""
    from kolyric.engine import quantize
    from kolyric.engine.loading import load_model

    loaded = load_model(str(path), device="cpu", precision="fp32")
    notice = quantize.set_precision(loaded, "int8", backend=backend)
    if quantize.int8_backend(loaded.model) != backend:
        print(f"  (int8 on {backend} unavailable: {notice})")
        return None
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bg.add_timing_arguments(parser)
    parser.add_argument(
        "--quality-model",
        default=None,
        help="model directory for BPC and agreement (default: kolyric-mini, else train one)",
    )
    parser.add_argument("--train-steps", type=int, default=800, help="steps when training the quality model")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    import torch

    from kolyric.engine import quantize

    threads = bg.use_clock(args.clock, args.threads)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    report: dict[str, Any] = {"threads": threads, "tokens": args.tokens, "reps": args.reps}
    print(
        f"torch {torch.__version__}, {threads} threads, {args.clock} clock, quantized engine "
        f"{quantize._pick_engine()}; {bg.load_line()}\n"
    )
    goals = []
    if not args.skip_speed:
        goals += speed(args, report)
    if not args.skip_quality:
        goals += quality(args, report)
    print(f"after: {bg.load_line()}\n")
    print("goals:")
    for label, ok, figure in goals:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {figure}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return 0


def speed(args: Any, report: dict) -> list[tuple]:
    """Sections 1, 2, 3 and 5 on the KoGPT2-shaped model."""
    import torch

    from kolyric.engine import quantize
    from kolyric.engine.loading import load_model
    from kolyric.engine.stream import Generator

    threads = torch.get_num_threads()
    bw = read_bandwidth()
    report["bandwidth"] = bw
    print(
        f"memory bandwidth (the roofline's): {bw['roofline_gb_s']:.1f} GB/s, a 1 GiB tensor copy counting bytes "
        f"read + written; stricter: sum {bw['sum_gb_s']:.1f}, matrix-vector {bw['matvec_gb_s']:.1f} (bytes "
        f"read); lenient: the copy counting bytes read only {bw['copy_read_gb_s']:.1f}"
    )

    path = kogpt2_shaped_dir()
    models = {"fp32": load_model(str(path), device="cpu", precision="fp32")}
    for backend in ("torch", "onnxruntime"):
        started = time.perf_counter()
        loaded = load_int8(path, backend)
        if loaded is not None:
            models[f"int8 {backend}"] = loaded
            report[f"load_int8_{backend}_s"] = time.perf_counter() - started
            print(f"(int8 on {backend}: fp32 load + quantizing took {time.perf_counter() - started:.1f} s)")
    roof = {}
    for label, loaded in models.items():
        size = quantize.weight_bytes(loaded.model)
        roof[label] = bw["roofline_gb_s"] * 1e9 / size
        report.setdefault("weight_bytes", {})[label] = size
        print(f"weights read per token, {label}: {size / 1e6:.1f} MB -> roofline {roof[label]:.1f} tok/s")
    report["roofline_tok_s"] = roof
    print()

    fp32 = models["fp32"]
    text = prompt_text_of_tokens(fp32.tokenizer, 32)
    gens = {label: Generator(loaded) for label, loaded in models.items()}
    prompt_ids, _ = gens["fp32"].prompt_ids(bg._request(text), args.tokens)
    assert len(prompt_ids) == 32
    report["speed"] = {}
    goals = []
    best_int8 = "int8 onnxruntime" if "int8 onnxruntime" in models else "int8 torch"
    for name in ("greedy", "combined"):
        settings = bg.settings_for(name, args.tokens)
        contenders = {
            "plain generate fp32": at_threads(
                "fp32", threads, lambda: bg.time_generate(fp32.model, fp32.tokenizer, prompt_ids, settings)
            )
        }
        for label, gen in gens.items():
            contenders[f"kolyric {label}"] = at_threads(label, threads, lambda g=gen: bg.time_stream(g, text, settings))
        runs = bg.interleaved(contenders, args.reps)
        rows = [bg.summary_row(n, r) for n, r in runs.items()]
        for row in rows:
            row["x_plain_fp32"] = bg.paired_ratio(runs, row["name"], "plain generate fp32")
            r = roof[row["name"].replace("kolyric ", "").replace("plain generate ", "")]
            row["roofline_share"] = row["tokens_per_s"] / r
            row["decode_roofline_share"] = row["decode_tokens_per_s"] / r
        print(f"{name} ({args.tokens} new tokens, 32-token prompt, {args.reps} interleaved reps):")
        bg.print_rows(
            rows,
            lambda row: (
                f"  x{row['x_plain_fp32']:.2f} plain fp32   roofline "
                f"{row['roofline_share'] * 100:.0f}% (decode "
                f"{row['decode_roofline_share'] * 100:.0f}%)"
            ),
        )
        report["speed"][name] = rows
        k8 = next(r for r in rows if r["name"] == f"kolyric {best_int8}")
        goals.append(
            (
                f"{name}: kolyric {best_int8} >= 2x plain generate fp32",
                k8["x_plain_fp32"] >= 2.0,
                f"x{k8['x_plain_fp32']:.2f}",
            )
        )
        goals.append(
            (
                f"{name}: kolyric {best_int8} >= 60% of its roofline (decode, copy bandwidth)",
                k8["decode_roofline_share"] >= 0.6,
                f"{k8['decode_roofline_share'] * 100:.0f}%",
            )
        )
        size = report["weight_bytes"][best_int8]
        shares = {key: k8["decode_tokens_per_s"] / (bw[f"{key}_gb_s"] * 1e9 / size) for key, _ in BANDWIDTHS}
        k8["decode_roofline_shares"] = shares
        print(
            f"  kolyric {best_int8} decode, share of its roofline by bandwidth: "
            + ", ".join(f"{text} {bw[key + '_gb_s']:.1f} GB/s -> {shares[key] * 100:.0f}%" for key, text in BANDWIDTHS)
        )
        print()

    print("per-token breakdown of kolyric's loop (decoding steps after the first, ms per token):")
    print(f"  {'':26} {'step':>7} {'forward':>8} {'procs':>7} {'detok':>7} {'rest':>7} {'outside fwd':>11}")
    report["breakdown"] = {}
    for label, gen in gens.items():
        for name in ("greedy", "combined"):
            settings = bg.settings_for(name, args.tokens)
            samples = [
                at_threads(label, threads, breakdown)(gen, text, settings) for _ in range(max(2, args.reps // 2) + 1)
            ][1:]
            b = {k: bg.median([s[k] for s in samples]) for k in samples[0] if k != "per_processor_us"}
            b["per_processor_us"] = {
                k: bg.median([s["per_processor_us"][k] for s in samples]) for k in samples[0]["per_processor_us"]
            }
            report["breakdown"][f"{label} {name}"] = b
            print(
                f"  {label + ' ' + name:26} {b['step_ms']:7.2f} {b['forward']:8.2f} {b['processors']:7.2f} "
                f"{b['detokenizer']:7.2f} {b['rest']:7.2f} {b['outside_forward_share'] * 100:10.1f}%"
            )
            if b["per_processor_us"]:
                print(
                    " " * 30
                    + "processors, µs a token: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in b["per_processor_us"].items())
                )
            if label == best_int8:
                goals.append(
                    (
                        f"{label} {name}: work outside the forward pass <= 10% of a step",
                        b["outside_forward_share"] <= 0.10,
                        f"{b['outside_forward_share'] * 100:.1f}%",
                    )
                )
    print()

    print("the forward step alone (batch 1, KV cache of 32-96 positions), median ms:")
    steps = forward_steps({label: loaded.model for label, loaded in models.items()}, max(2, args.reps // 2), threads)
    report["forward_step_ms"] = steps
    for label, ms in steps.items():
        share = roof[label] and 1e3 / ms / roof[label] * 100
        print(f"  {label:18} {ms:7.2f} ms  ({1e3 / ms:6.1f} steps/s, {share:.0f}% of roofline)")
    print()
    return goals


def quality(args: Any, report: dict) -> list[tuple]:
    """Section 4: BPC and greedy agreement, fp32 against int8 on each backend."""
    from kolyric.engine.loading import load_model

    qdir = quality_model_dir(args.quality_model, args.train_steps)
    q32 = load_model(str(qdir), device="cpu", precision="fp32")
    reviews = list(nsmc_reviews("test", limit=500))
    prompts = agreement_prompts(30)
    bpc32 = bits_per_char(q32, reviews)
    print(
        f"quality on {qdir.name} ({q32.n_params / 1e6:.1f}M params), 500 NSMC test reviews, "
        f"{len(prompts)} greedy prompts:"
    )
    print(f"  fp32: {bpc32:.4f} bits per character")
    report["quality"] = {"model": str(qdir), "bpc_fp32": bpc32}
    goals = []
    for backend in ("torch", "onnxruntime"):
        q8 = load_int8(qdir, backend)
        if q8 is None:
            continue
        bpc8 = bits_per_char(q8, reviews, stepwise=backend == "onnxruntime")
        same, mean_prefix = greedy_agreement(q32, q8, prompts)
        report["quality"][backend] = {
            "bpc": bpc8,
            "bpc_delta": bpc8 - bpc32,
            "greedy_agree_10": same,
            "prompts": len(prompts),
            "mean_agreeing_prefix": mean_prefix,
        }
        print(
            f"  int8 {backend}: {bpc8:.4f} bits per character (delta {bpc8 - bpc32:+.4f}; goal |delta| <= 0.03); "
            f"greedy agreeing on the first 10 tokens: {same}/{len(prompts)} (mean agreeing prefix "
            f"{mean_prefix:.1f})"
        )
        goals.append((f"int8 {backend}: BPC within 0.03 of fp32", abs(bpc8 - bpc32) <= 0.03, f"{bpc8 - bpc32:+.4f}"))
        goals.append(
            (f"int8 {backend}: greedy agreement in most cases", same > len(prompts) / 2, f"{same}/{len(prompts)}")
        )
    for precision in ("int8", "int4"):  # load_model's ONNX Runtime graphs alone (kolyric.engine.onnx_model)
        graph = load_model(str(qdir), device="cpu", precision=precision)
        if type(graph.model).__name__ != "OnnxLM":
            print(f"  {precision} graph unavailable: {graph.notices}")
            continue
        bpc = bits_per_char(graph, reviews)
        same, mean_prefix = greedy_agreement(q32, graph, prompts)
        report["quality"][f"{precision} graph"] = {
            "bpc": bpc,
            "bpc_delta": bpc - bpc32,
            "greedy_agree_10": same,
            "prompts": len(prompts),
            "mean_agreeing_prefix": mean_prefix,
        }
        print(
            f"  {precision} graph (load_model): {bpc:.4f} bits per character (delta {bpc - bpc32:+.4f}); greedy "
            f"agreeing on the first 10 tokens: {same}/{len(prompts)} (mean agreeing prefix {mean_prefix:.1f})"
        )
    print()
    return goals


if __name__ == "__main__":
    raise SystemExit(main())
