"""Tiny GPT-2s whose vocabularies hold Korean stems and endings as separate tokens.

Every syllable is a token of its own, and so is every syllable after a space (``▁좋``): a word
such as 좋아 is two tokens, a stem (좋) and an ending (아), and a syllable count can end a line
on the stem. The corpus is made-up verse from a fixed word list in which some syllables are
only ever stems (``STEMS``: never the last syllable of a word), so whether a line ends on a bare
stem is known without asking the model. A short training run (a few hundred steps, ~20 s on
one CPU thread, cached on disk) teaches the model which syllables end words.

Two kinds: ``newline`` (line ``\\n`` and stanza ``\\n\\n`` tokens, lines joined by newlines, as
kolyric's own trainer makes them) and ``plain`` (no newline token, lines joined by spaces, like a
model trained on single-line reviews).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

# Words of 1-3 syllables. No word is the start of another, so a line's last word is whole
# exactly when it is one of these.
WORDS = (
    "봄",
    "꿈",
    "너",
    "나",
    "별",
    "밤",
    "길",
    "달",
    "눈",
    "꽃",
    "잠",
    "빛",
    "좋아",
    "좋다",
    "싶어",
    "싶다",
    "먹고",
    "먹어",
    "줬어",
    "줬다",
    "했어",
    "했지",
    "갔어",
    "갔다",
    "왔어",
    "왔네",
    "봤어",
    "봤지",
    "웃고",
    "울어",
    "걸어",
    "걷고",
    "찾아",
    "잡고",
    "사랑해",
    "그리워",
    "보고파",
    "노래해",
    "기다려",
    "바라봐",
    "꿈꾸며",
)
STEMS = frozenset(s for w in WORDS for s in w[:-1]) - frozenset(w[-1] for w in WORDS)
"""Syllables that only ever begin or continue a word in the corpus, never end one."""
SPECIALS = ["<s>", "</s>", "<usr>", "<pad>", "<sys>", "<unk>", "<mask>"]
KINDS = ("newline", "plain")


def corpus(n_poems: int = 600, seed: int = 7) -> list[str]:
    """Poems of 4 lines of 2-4 words each."""
    rng = random.Random(seed)
    poems = []
    for _ in range(n_poems):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))) for _ in range(4)]
        poems.append("\n".join(lines))
    return poems


def make_tokenizer(kind: str) -> Any:
    """A PreTrainedTokenizerFast: one token per syllable, one per syllable after a space, and
    (``newline``) the line and stanza breaks as ordinary tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    from kolyric.training.scratch import with_kogpt2_specials

    syllables = sorted({s for w in WORDS for s in w})
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for token in ["▁", *syllables, *("▁" + s for s in syllables)]:
        vocab.setdefault(token, len(vocab))
    merges = [("▁", s) for s in syllables]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    wrapped = with_kogpt2_specials(tok)
    if kind == "newline":
        wrapped.add_tokens([AddedToken(t, normalized=False, special=False) for t in ("\n\n", "\n")])
    return wrapped


def build(out: Path, kind: str, steps: int = 300, seed: int = 7) -> None:
    """Train the tiny model of ``kind`` on the corpus and save it (model and tokenizer) in ``out``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer(kind)
    texts = corpus(seed=seed)
    if kind == "plain":
        texts = [t.replace("\n", " ") for t in texts]
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=128,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    eos = tokenizer.eos_token
    for step in range(steps):
        batch = [texts[(step * 16 + j) % len(texts)] + eos for j in range(16)]
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def model_dir(cache: Path, kind: str) -> Path:
    """The trained model of ``kind`` under ``cache`` (built once, keyed by this file's content)."""
    import hashlib
    import shutil
    import tempfile

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    out = cache / f"word-model-{kind}-{key}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    build(tmp, kind)
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ends_on_stem(line: str) -> bool:
    """Whether a line's last Hangul syllable is one that never ends a word."""
    from kolyric.korean.hangul import hangul_syllables

    syllables = hangul_syllables(line)
    return bool(syllables) and syllables[-1] in STEMS
