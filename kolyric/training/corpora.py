"""Training corpora: NSMC and the user's own lyrics, read into ``Example(text, polarity)`` rows.

- **NSMC** (Naver movie reviews, label 0/1 → 부정/긍정). When ``<root>/nsmc/ratings_train.txt``
  and ``ratings_test.txt`` both exist they are read directly, with no network call at all
  (Korpora's own loader always contacts the network first, so it is never used). Only when
  they are missing is Korpora asked to download them into ``<root>``; they are then read the
  same way. The validation split is NSMC's test file.
- **The user's files**, UTF-8 (a leading BOM is fine):
  ``.txt``  one lyric line per line, blank lines between songs; one example per song;
  ``.tsv``  ``text<TAB>polarity`` per row (polarity column optional, an optional
  ``text<TAB>polarity`` header);
  ``.jsonl`` one ``{"text": …, "polarity": "긍정" | "부정" | null}`` object per line.
  The validation split is a seeded share of the file.

Every problem is a ``CorpusError`` naming the file (and line, for a malformed row). With
``skip_bad=True`` malformed rows are skipped and counted instead.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

POSITIVE, NEGATIVE = "긍정", "부정"
NSMC_LABELS = {"0": NEGATIVE, "1": POSITIVE}
# Spellings accepted for the polarity column of a .tsv file ("" means none).
_POLARITY_WORDS = {
    "긍정": POSITIVE, "부정": NEGATIVE, "1": POSITIVE, "0": NEGATIVE,
    "positive": POSITIVE, "negative": NEGATIVE, "pos": POSITIVE, "neg": NEGATIVE,
    "": None, "none": None, "null": None, "-": None,
}
USER_SUFFIXES = (".txt", ".tsv", ".jsonl")


class CorpusError(Exception):
    """A corpus cannot be used; the message names the file (and line) and says why."""


@dataclass(frozen=True)
class Example:
    """One training text and its optional polarity word (``긍정``/``부정``)."""

    text: str
    polarity: str | None = None


@dataclass
class Corpus:
    """A corpus split into training and validation examples."""

    train: list[Example]
    val: list[Example]
    description: str
    skipped: int = 0
    """Malformed rows skipped (only with ``skip_bad``)."""
    notices: list[str] = field(default_factory=list)


# -- NSMC ------------------------------------------------------------------------------------------
def nsmc_files(root: str | os.PathLike) -> dict[str, Path]:
    base = Path(root).expanduser() / "nsmc"
    return {"train": base / "ratings_train.txt", "test": base / "ratings_test.txt"}


def read_nsmc(root: str | os.PathLike, split: str, *, limit: int | None = None,
              skip_bad: bool = False, download: bool = True) -> tuple[list[Example], int]:
    """NSMC ``split`` ("train" or "test") from ``<root>/nsmc``; downloads it only when absent.

    Returns the examples and the number of malformed rows skipped. Rows whose review is
    empty (NSMC has a few) are dropped silently: there is nothing to learn from them.
    """
    files = nsmc_files(root)
    if not all(p.is_file() for p in files.values()):
        if not download:
            raise CorpusError(f"{files[split]}: NSMC is not there (and downloading is off)")
        _download_nsmc(root)
    return _read_nsmc_file(files[split], limit=limit, skip_bad=skip_bad)


def _download_nsmc(root: str | os.PathLike) -> None:
    """Korpora's download of the NSMC files into ``<root>/nsmc`` (network needed)."""
    try:
        from Korpora.korpus_nsmc import fetch_nsmc
    except ImportError as exc:
        raise CorpusError(
            f"{root}: NSMC is not in {Path(root) / 'nsmc'} and Korpora is not installed to "
            f"download it ({exc})") from None
    try:
        fetch_nsmc(str(Path(root).expanduser()), False)
    except Exception as exc:  # noqa: BLE001 - any download failure is the same story for the user
        raise CorpusError(
            f"{root}: NSMC is not in {Path(root) / 'nsmc'} and downloading it failed "
            f"({_one_line(exc)}); put ratings_train.txt and ratings_test.txt there, "
            f"or use --corpus-dir pointing at a copy") from None


def _read_nsmc_file(path: Path, *, limit: int | None, skip_bad: bool) -> tuple[list[Example], int]:
    return _read_rows(path, skip_bad, _nsmc_row, limit=limit)


def _nsmc_row(number: int, line: str) -> Example | str | None:
    if number == 1 and line.startswith("id\t"):
        return None  # header
    parts = line.split("\t")
    if len(parts) != 3 or parts[2].strip() not in NSMC_LABELS:
        return f"expected 'id<TAB>document<TAB>label (0 or 1)', got {_preview(line)}"
    text = parts[1].strip()
    return Example(text, NSMC_LABELS[parts[2].strip()]) if text else None


# -- the user's files --------------------------------------------------------------------------------
def read_user_file(path: str | os.PathLike, *, skip_bad: bool = False) -> tuple[list[Example], int]:
    """The examples in a ``.txt``, ``.tsv`` or ``.jsonl`` file and how many bad rows were skipped."""
    path = Path(path).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not exists:
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a corpus file")
    suffix = path.suffix.lower()
    if suffix not in USER_SUFFIXES:
        raise CorpusError(f"{path}: unknown corpus format {suffix or '(no extension)'!r}; "
                          f"use one of {', '.join(USER_SUFFIXES)}")
    reader = {".txt": _read_txt, ".tsv": _read_tsv, ".jsonl": _read_jsonl}[suffix]
    examples, skipped = reader(path, skip_bad)
    if not examples:
        extra = f" ({skipped} malformed rows skipped)" if skipped else ""
        raise CorpusError(f"{path}: the corpus is empty: no usable text{extra}")
    return examples, skipped


def _read_txt(path: Path, skip_bad: bool) -> tuple[list[Example], int]:
    songs: list[Example] = []
    lines: list[str] = []
    skipped = 0
    for _, line in _lines(path, skip_bad=skip_bad):
        if line is None:
            skipped += 1
        elif line.strip():
            lines.append(line.strip())
        elif lines:
            songs.append(Example("\n".join(lines)))
            lines = []
    if lines:
        songs.append(Example("\n".join(lines)))
    return songs, skipped


def _read_rows(path: Path, skip_bad: bool, parse: Callable[[int, str], "Example | str | None"],
               limit: int | None = None) -> tuple[list[Example], int]:
    """The row loop of the NSMC, ``.tsv`` and ``.jsonl`` readers. ``parse(number, line)`` returns
    an Example, None for a row to pass over (a header), or a string naming what is wrong; a bad
    row is an error naming file and line, or skipped and counted with ``skip_bad``. Blank lines
    are passed over; reading stops after ``limit`` examples."""
    examples: list[Example] = []
    skipped = 0
    for number, line in _lines(path, skip_bad=skip_bad):
        if line is None:
            skipped += 1
            continue
        if not line.strip():
            continue
        parsed = parse(number, line)
        if isinstance(parsed, str):
            if skip_bad:
                skipped += 1
                continue
            raise CorpusError(f"{path}:{number}: {parsed}")
        if parsed is not None:
            examples.append(parsed)
            if limit is not None and len(examples) >= limit:
                break
    return examples, skipped


def _read_tsv(path: Path, skip_bad: bool) -> tuple[list[Example], int]:
    return _read_rows(path, skip_bad, _tsv_row)


def _tsv_row(number: int, line: str) -> Example | str | None:
    parts = line.split("\t")
    if number == 1 and [p.strip().lower() for p in parts] in (["text"], ["text", "polarity"]):
        return None  # header
    if len(parts) > 2:
        return f"expected 'text' or 'text<TAB>polarity', got {len(parts)} columns"
    if not parts[0].strip():
        return "the text column is empty"
    if len(parts) == 2 and parts[1].strip().lower() not in _POLARITY_WORDS:
        return f"polarity must be 긍정, 부정 or empty, got {parts[1].strip()!r}"
    polarity = _POLARITY_WORDS[parts[1].strip().lower()] if len(parts) == 2 else None
    return Example(parts[0].strip(), polarity)


def _read_jsonl(path: Path, skip_bad: bool) -> tuple[list[Example], int]:
    return _read_rows(path, skip_bad, _jsonl_row)


def _jsonl_row(number: int, line: str) -> Example | str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}, column {exc.colno})"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        return "'text' must be a non-empty string"
    if row.get("polarity") not in (POSITIVE, NEGATIVE, None):
        return f"'polarity' must be \"긍정\", \"부정\" or null, got {row['polarity']!r}"
    return Example(row["text"].strip(), row.get("polarity"))


def _lines(path: Path, *, skip_bad: bool = False):
    """(line number, line without its newline) for a UTF-8 file; a BOM is ignored.

    Bytes that are not UTF-8 are an error naming the line; with ``skip_bad`` the line comes
    back as ``None`` for the caller to count as skipped.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if skip_bad:
                    yield number, None
                    continue
                raise CorpusError(f"{path}:{number}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            yield number, line.rstrip("\r\n")


# -- splits and the one entry point ------------------------------------------------------------------
def split_validation(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded random ``share`` of ``examples`` for validation (at least one), the rest for training."""
    if len(examples) < 2:
        raise CorpusError(f"need at least 2 examples to split off a validation set, got {len(examples)}")
    n_val = min(len(examples) - 1, max(1, round(len(examples) * share)))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [ex for i, ex in enumerate(examples) if i in val_idx]
    return train, val


def load_corpus(spec: str, *, root: str | os.PathLike = ".", val_share: float = 0.1, seed: int = 7,
                limit_train: int | None = None, limit_val: int | None = None,
                skip_bad: bool = False) -> Corpus:
    """``spec`` is ``nsmc`` (read from ``root``) or the path of a user file."""
    if spec.strip().lower() == "nsmc":
        train, skipped_train = read_nsmc(root, "train", limit=limit_train, skip_bad=skip_bad)
        val, skipped_val = read_nsmc(root, "test", limit=limit_val, skip_bad=skip_bad)
        where = nsmc_files(root)["train"].parent
        for name, rows in (("train", train), ("test", val)):
            if not rows:
                raise CorpusError(f"{nsmc_files(root)[name]}: the corpus is empty: no usable rows")
        corpus = Corpus(train, val, f"NSMC from {where}", skipped_train + skipped_val)
    else:
        examples, skipped = read_user_file(spec, skip_bad=skip_bad)
        train, val = split_validation(examples, val_share, seed)
        if limit_train is not None:
            train = train[:limit_train]
        if limit_val is not None:
            val = val[:limit_val]
        corpus = Corpus(train, val, str(spec), skipped)
    if corpus.skipped:
        corpus.notices.append(f"skipped {corpus.skipped} malformed row(s)")
    return corpus


def _preview(line: str, width: int = 60) -> str:
    return repr(line if len(line) <= width else line[:width] + "…")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
