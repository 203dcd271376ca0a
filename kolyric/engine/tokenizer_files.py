"""A fast tokenizer read straight from its files with the ``tokenizers`` library: no transformers.

``transformers`` costs ~0.7-1.2 s to import, more than anything on a cached graph's path to the
first token but torch. An ONNX model's index entry keeps its tokenizer as ``save_pretrained``
wrote it (``tokenizer.json`` beside ``tokenizer_config.json``), so ``FastTokenizer`` reads those
two files and answers what generating asks of a tokenizer (encode, decode, the vocabulary, the
special tokens and their ids) as ``PreTrainedTokenizerFast.from_pretrained`` followed by
``loading.fill_special_tokens`` does, through the same Rust tokenizer. Anything else (calling it
for a batch with tensors, adding tokens, saving, chat templates…) goes to that transformers
tokenizer, loaded from the same folder on first use, which then answers everything: a
tokenizer that has been changed answers as one object.

A folder without ``tokenizer.json`` (a slow tokenizer) is not for this class: ``read`` returns
None and the caller loads it through transformers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""transformers' ``SPECIAL_TOKENS_ATTRIBUTES``, in its order (``all_special_tokens`` follows it)."""
_CONFIG_KEYS_HANDLED = set(ROLES) | {
    "added_tokens_decoder",
    "additional_special_tokens",
    "backend",
    "clean_up_tokenization_spaces",
    "extra_special_tokens",
    "is_local",
    "local_files_only",
    "model_max_length",
    "tokenizer_class",
    "padding_side",
    "truncation_side",
    "model_input_names",
}
_SAFE_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend", "GPT2Tokenizer", "GPT2TokenizerFast"}


class FastTokenizer:
    """``tokenizer.json`` through the Rust tokenizer, answering as transformers' fast tokenizer."""

    def __init__(self, folder: Path, backend: Tokenizer, config: dict, roles: dict[str, str]):
        self.name_or_path = str(folder)
        self._folder = folder
        self._tokenizer = backend
        self._real: PreTrainedTokenizerFast | None = None
        self._real_lock = threading.Lock()
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.model_max_length = config.get("model_max_length")
        self._roles = roles
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        self._extra = [t for t in (_token_text(x) for x in extra) if t]

    # -- what generating asks of a tokenizer -------------------------------------------------
    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._real.backend_tokenizer if self._real is not None else self._tokenizer

    def __len__(self) -> int:
        return len(self._real) if self._real is not None else self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __bool__(self) -> bool:
        return True

    def get_vocab(self) -> dict[str, int]:
        if self._real is not None:
            return self._real.get_vocab()
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        if self._real is not None:
            return self._real.added_tokens_decoder
        return self._tokenizer.get_added_tokens_decoder()

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: object) -> list[int]:
        if self._real is not None or kwargs or not isinstance(text, str):
            return self._transformers().encode(text, add_special_tokens=add_special_tokens, **kwargs)
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(
        self,
        token_ids: int | Sequence[int] | Sequence[Sequence[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: object,
    ) -> str | list[str]:
        if self._real is not None or kwargs:
            return self._transformers().decode(
                token_ids,
                skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                **kwargs,
            )
        ids = _plain_ids(token_ids)
        if ids and isinstance(ids[0], list):  # a batch, as transformers' decode takes one
            return [self._decode_one(row, skip_special_tokens, clean_up_tokenization_spaces) for row in ids]
        return self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences: Iterable[Sequence[int]], **kwargs: object) -> list[str]:
        return [self.decode(seq, **kwargs) for seq in sequences]

    def _decode_one(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None) -> str:
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        if clean and type(self._tokenizer.model).__name__ != "BPE":  # transformers skips it for BPE
            text = clean_up_tokenization(text)
        return text

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        if self._real is not None:
            return self._real.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int | None] | None:
        if self._real is not None:
            return self._real.convert_tokens_to_ids(tokens)
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(t) for t in tokens]

    def _token_id(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        if found is None and "unk_token" in self._roles:
            return self._tokenizer.token_to_id(self._roles["unk_token"])
        return found

    # -- the special tokens -------------------------------------------------------------------
    @property
    def special_tokens_map(self) -> dict[str, str]:
        if self._real is not None:
            return self._real.special_tokens_map
        return {role: self._roles[role] for role in ROLES if role in self._roles}

    @property
    def all_special_tokens(self) -> list[str]:
        if self._real is not None:
            return self._real.all_special_tokens
        seen: list[str] = []
        for token in [*self._roles.values(), *self._extra]:
            if token not in seen:
                seen.append(token)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        if self._real is not None:
            return self._real.all_special_ids
        return [self._token_id(t) for t in self.all_special_tokens]  # type: ignore[misc]

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name in ("_real", "_tokenizer", "_roles", "_extra", "_folder", "_real_lock"):
            raise AttributeError(name)
        role = name[: -len("_id")] if name.endswith("_id") else name
        if role in ROLES and self._real is None:
            token = self._roles.get(role)
            if name == role:
                return token
            return self._token_id(token) if token is not None else None
        return getattr(self._transformers(), name)

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._transformers()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FastTokenizer({self.name_or_path!r}, vocab_size={len(self)})"

    def _transformers(self) -> PreTrainedTokenizerFast:
        """The same tokenizer through transformers (what ``loading.load_tokenizer`` gives), from
        now on the one that answers."""
        with self._real_lock:
            if self._real is None:
                from transformers import PreTrainedTokenizerFast

                from kolyric.engine.loading import fill_special_tokens

                real = PreTrainedTokenizerFast.from_pretrained(str(self._folder), local_files_only=True)
                self._real = fill_special_tokens(real)
            return self._real


def read(folder: Path) -> FastTokenizer | None:
    """The folder's tokenizer as a ``FastTokenizer``, or None when its files need transformers
    (no tokenizer.json, a tokenizer class or setting this class does not reproduce)."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    config = _json(folder / "tokenizer_config.json")
    if config is None:
        return None
    specials = _json(folder / "special_tokens_map.json") if (folder / "special_tokens_map.json").exists() else {}
    if specials is None or str(config.get("tokenizer_class") or "PreTrainedTokenizerFast") not in _SAFE_CLASSES:
        return None
    if set(config) - _CONFIG_KEYS_HANDLED or config.get("padding_side", "right") != "right":
        return None  # a setting transformers applies that this class would not
    merged = {**specials, **config}
    roles = {role: token for role in ROLES if (token := _token_text(merged.get(role))) is not None}
    backend = Tokenizer.from_file(str(path))
    if _would_add_tokens(roles, backend) or not _added_tokens_match(merged, backend):
        return None
    if "pad_token" not in roles and "eos_token" in roles:  # as fill_special_tokens sets it
        roles["pad_token"] = roles["eos_token"]
    if backend.padding is not None:  # transformers turns both off for every plain encode
        backend.no_padding()
    if backend.truncation is not None:
        backend.no_truncation()
    return FastTokenizer(folder, backend, merged, roles)


def _would_add_tokens(roles: dict[str, str], backend: Tokenizer) -> bool:
    """Whether ``loading.fill_special_tokens`` would add a KoGPT2 special token to the Rust
    tokenizer (a role the files lack, whose token the vocabulary has): transformers' job. An index
    entry's files are saved after it ran, so they have every such role."""
    from kolyric.engine.loading import KOGPT2_SPECIAL_TOKENS

    return any(
        role not in roles and backend.token_to_id(token) is not None for role, token in KOGPT2_SPECIAL_TOKENS.items()
    )


def _added_tokens_match(config: dict, backend: Tokenizer) -> bool:
    """Whether the tokens the config lists (``added_tokens_decoder``, the extra special tokens)
    are all in the Rust tokenizer already, as they are: else transformers would add them."""
    present = backend.get_added_tokens_decoder()
    listed = config.get("added_tokens_decoder") or {}
    if not isinstance(listed, dict):
        return False
    for key, token in listed.items():
        content = _token_text(token)
        if content is None or not str(key).isdigit() or getattr(present.get(int(key)), "content", None) != content:
            return False
    contents = {t.content for t in present.values() if t.special}
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    return isinstance(extra, list) and all(_token_text(t) in contents for t in extra)


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _token_text(value: object) -> str | None:
    """A special token as the config writes it: a string, or an AddedToken's dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _plain_ids(token_ids: object) -> list:
    """Ids as Python ints (lists of them for a batch), from ints, lists, NumPy arrays or tensors."""
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [token_ids]
    out = []
    for item in token_ids:  # type: ignore[union-attr]
        if hasattr(item, "tolist"):
            item = item.tolist()
        out.append([int(i) for i in item] if isinstance(item, (list, tuple)) else int(item))
    return out


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for before, after in _CLEANUPS:
        text = text.replace(before, after)
    return text


_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)

__all__ = ["FastTokenizer", "clean_up_tokenization", "read"]
