"""From scratch: a new tokenizer trained on the corpus and a small GPT-2 config.

The tokenizer mirrors KoGPT2's on-disk format: a BPE ``tokenizer.json`` loaded through
``PreTrainedTokenizerFast``, with KoGPT2's special tokens (``</s>`` as bos/eos, ``<unk>``,
``<pad>``, ``<mask>``). Two kinds:

- ``metaspace`` (default, like KoGPT2): whole characters are the base units, spaces become
  ``▁``; characters outside the learned alphabet become ``<unk>``. Every token is a run of
  whole syllables, which keeps the syllable/rhyme constraints exact.
- ``bytelevel`` (GPT-2's): bytes are the base units, nothing is ever unknown, but a token can
  hold part of a syllable's UTF-8 bytes.

Both keep line structure: a line break (``\n``) and a stanza break (``\n\n``) are ordinary
tokens of their own, so the model can learn where lines end and write lines by itself. Runs of
newlines are split off before BPE, so no token ever joins a newline to a syllable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Regex, Tokenizer
    from tokenizers.pre_tokenizers import Split
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<s>", "</s>", "<usr>", "<pad>", "<sys>", "<unk>", "<mask>"]
LINE_BREAK, STANZA_BREAK = "\n", "\n\n"
# Longest first: the added-token matcher then reads "\n\n" as one stanza break, not two lines.
LINE_TOKENS = (STANZA_BREAK, LINE_BREAK)
TOKENIZER_KINDS = ("metaspace", "bytelevel")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    kind: str = "metaspace",
    min_frequency: int = 2,
    alphabet_size: int = 2500,
) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind: must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
    if vocab_size < len(SPECIAL_TOKENS) + 64:
        raise ValueError(f"vocab_size: must be at least {len(SPECIAL_TOKENS) + 64}, got {vocab_size}")
    if kind == "metaspace":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [_newline_split(pre_tokenizers, Regex), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            limit_alphabet=alphabet_size,
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [_newline_split(pre_tokenizers, Regex), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = with_kogpt2_specials(tok)
    add_line_tokens(wrapped)
    return wrapped


def with_kogpt2_specials(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """``tok`` as a transformers tokenizer with KoGPT2's special tokens (``</s>`` both begins and
    ends a text), decoding without transformers' clean-up of spaces before punctuation, so a
    text decodes back to itself."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        clean_up_tokenization_spaces=False,
    )


def _newline_split(pre_tokenizers: ModuleType, regex: type[Regex]) -> Split:
    return pre_tokenizers.Split(regex(r"\n+"), behavior="isolated")


def keeps_line_breaks(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` reads a line and a stanza break as tokens of their own, and gives
    them back unchanged."""
    probe = f"가{LINE_BREAK}나{STANZA_BREAK}다"
    ids = tokenizer.encode(probe, add_special_tokens=False)
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        return False
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return (
        LINE_BREAK in pieces
        and STANZA_BREAK in pieces
        and tokenizer.decode(ids, clean_up_tokenization_spaces=False) == probe
    )


def add_line_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Give ``tokenizer`` line and stanza break tokens where it lacks them (a KoGPT2 or other base
    whose vocabulary has none); returns how many were added. The caller resizes the model's
    embeddings to ``len(tokenizer)``."""
    from tokenizers import AddedToken

    if keeps_line_breaks(tokenizer):
        return 0
    # normalized=False: matched before any normaliser could fold a newline into a space.
    return tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in LINE_TOKENS])


@dataclass(frozen=True)
class ModelShape:
    """The size of a GPT-2 trained from scratch."""

    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 256
    """Width of the residual stream; must divide by n_head."""
    n_head: int = 4
    """Attention heads."""
    n_positions: int = 128
    """Longest context in tokens."""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd: must be divisible by n_head ({self.n_head}), got {self.n_embd}")


def new_model(tokenizer: PreTrainedTokenizerBase, shape: ModelShape = ModelShape(), seed: int = 7) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 sized by ``shape`` for ``tokenizer``'s vocabulary."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)
