"""Benchmark the training data pipeline (not collected by pytest).

Prints:
1. the time to tokenize NSMC train (150K rows) with ``tokenize_examples``;
2. training throughput of kolyric's batches (dynamic padding, padding masked from the loss)
   against the tutorial's (every row padded to ``max_seq_length``, loss on the padding), on the
   same small GPT-2, batch size and data: steps/s, all tokens/s (padding included) and useful
   tokens/s (real tokens only: what the model actually learns from);
3. how loss on padding flatters ``val_loss``: one model's validation loss computed both ways.

    python tests/benchmarks/bench_training.py --corpus-dir ../shared [--device cuda --bf16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from kolyric.training.corpora import load_corpus
from kolyric.training.dataset import (
    DynamicPaddingCollator,
    FixedPaddingCollator,
    LengthGroupedBatchSampler,
    format_example,
    tokenize_examples,
)
from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", default=str(ROOT.parent / "shared"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (as --precision bf16-mixed)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per scheme")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=32)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    corpus = load_corpus("nsmc", root=args.corpus_dir, limit_val=5000)
    t0 = time.perf_counter()
    tokenizer = train_tokenizer((format_example(e) for e in corpus.train[:30000]), vocab_size=args.vocab_size)
    print(f"tokenizer ({args.vocab_size} BPE, trained on 30K rows): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    train = tokenize_examples(corpus.train, tokenizer, args.max_seq_length)
    seconds = time.perf_counter() - t0
    print(
        f"tokenize NSMC train: {len(train):,} rows, {train.n_tokens:,} tokens in {seconds:.2f} s "
        f"({len(train) / seconds:,.0f} rows/s)"
    )
    val = tokenize_examples(corpus.val, tokenizer, args.max_seq_length)
    lengths = train.lengths().float()
    print(
        f"row length: mean {lengths.mean():.1f}, median {lengths.median():.0f}, "
        f"at the {args.max_seq_length} limit {(lengths == args.max_seq_length).float().mean():.1%}"
    )

    device = torch.device(args.device)
    shape = ModelShape(
        n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, n_positions=max(128, args.max_seq_length)
    )
    pad = tokenizer.pad_token_id
    schemes = {
        # kolyric train: length-grouped batches, padded to their longest row, padding masked.
        "kolyric (length-grouped, dynamic pad, masked)": (DynamicPaddingCollator(pad), True),
        "random batches, dynamic pad, masked": (DynamicPaddingCollator(pad), False),
        # The tutorial pads with </s> (its pad token); the id does not change the cost.
        "tutorial (pad to max_seq_length, loss on pad)": (
            FixedPaddingCollator(tokenizer.eos_token_id, args.max_seq_length),
            False,
        ),
    }
    print(
        f"\ndevice {device}{' bf16 autocast' if args.bf16 else ''} · GPT-2 {shape} · batch {args.batch_size}"
        f" · {args.steps} timed steps after 5 warm-up steps"
    )
    # Warm every batch shape once first (CUDA context, kernel choice per length), so the
    # scheme timed first pays no start-up cost the others do not.
    warm = new_model(tokenizer, shape, seed=7).to(device).train()
    for width in range(1, args.max_seq_length + 1):
        ids = torch.full((args.batch_size, width), pad, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            warm(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.backward()
    del warm
    results = {}
    for name, (collate, grouped) in schemes.items():
        model = new_model(tokenizer, shape, seed=7).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if grouped:
            loader = DataLoader(
                train,
                collate_fn=collate,
                batch_sampler=LengthGroupedBatchSampler(train.lengths(), args.batch_size, seed=7),
            )
        else:
            loader = DataLoader(
                train,
                batch_size=args.batch_size,
                shuffle=True,
                collate_fn=collate,
                generator=torch.Generator().manual_seed(7),
            )
        it = iter(loader)
        real = total = 0
        for step in range(5 + args.steps):
            if step == 5:
                _sync(device)
                t0 = time.perf_counter()
                real = total = 0
            batch = {k: v.to(device, non_blocking=True) for k, v in next(it).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            real += int(batch["attention_mask"].sum())
            total += batch["input_ids"].numel()
        _sync(device)
        seconds = time.perf_counter() - t0
        results[name] = (args.steps / seconds, total / seconds, real / seconds)
        print(
            f"  {name:48s} {args.steps / seconds:7.1f} steps/s · {total / seconds:10,.0f} tokens/s · "
            f"{real / seconds:10,.0f} useful tokens/s ({real / total:.0%} of positions are real)"
        )
        if name.startswith("kolyric"):
            trained = model
    ours, _, tutorial = results.values()
    print(f"  useful tokens/s, kolyric ÷ tutorial: ×{ours[2] / tutorial[2]:.2f}")

    # The same trained model, validated with the two labelings.
    trained.eval()
    sums = {"masked": [0.0, 0], "loss on padding": [0.0, 0]}
    loaders = {
        "masked": DynamicPaddingCollator(pad),
        "loss on padding": FixedPaddingCollator(tokenizer.eos_token_id, args.max_seq_length),
    }
    with torch.no_grad():
        for label, collate in loaders.items():
            for batch in DataLoader(val, batch_size=256, collate_fn=collate):
                batch = {k: v.to(device) for k, v in batch.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                    loss = trained(**batch).loss
                n = int((batch["labels"][:, 1:] != -100).sum())
                sums[label][0] += float(loss) * n
                sums[label][1] += n
    print(
        "\nval_loss of the kolyric-trained model on 5,000 NSMC test rows: "
        + ", ".join(f"{k} {s / n:.3f}" for k, (s, n) in sums.items())
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
