"""A tiny model trained until it has memorised four lines, shared by the quantization suites:
every greedy step has a large margin, so 8-bit or 4-bit rounding should not change a choice."""

from __future__ import annotations

from pathlib import Path

LINES = [
    "영화 정말 재밌어요 최고의 영화",
    "배우 연기가 너무 좋았어요",
    "음악도 좋고 영상도 예뻐요",
    "다시 보고 싶은 영화 입니다",
]


def train_peaked(tiny_model_dir: Path, out: Path) -> Path:
    """``tiny_model_dir``'s model trained on ``LINES`` for 60 steps, saved with its tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    enc = tokenizer([line + tokenizer.eos_token for line in LINES], return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    model.train()
    for _ in range(60):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
