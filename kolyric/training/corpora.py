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

  A verse file such as ``poems.jsonl`` (``{"author", "title", "text"}``, one poem a line) reads
  as it is: one poem an example, ``text`` keeping its line (``\n``) and stanza (``\n\n``)
  breaks; other keys are ignored.
  The validation split is a seeded share of the file.

Several corpora train together (``load_corpora``): each spec is ``nsmc`` or a path, optionally
followed by ``,repeat=N`` to show its training examples N times an epoch, so a small verse file
is not drowned by 150,000 reviews. Validation examples are never repeated.

Every problem is a ``CorpusError`` naming the file (and line, for a malformed row). With
``skip_bad=True`` malformed rows are skipped and counted instead.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

POSITIVE, NEGATIVE = "긍정", "부정"
NSMC_LABELS = {"0": NEGATIVE, "1": POSITIVE}
# Spellings accepted for the polarity column of a .tsv file ("" means none).
_POLARITY_WORDS = {
    "긍정": POSITIVE,
    "부정": NEGATIVE,
    "1": POSITIVE,
    "0": NEGATIVE,
    "positive": POSITIVE,
    "negative": NEGATIVE,
    "pos": POSITIVE,
    "neg": NEGATIVE,
    "": None,
    "none": None,
    "null": None,
    "-": None,
}
USER_SUFFIXES = (".txt", ".tsv", ".jsonl")
MAX_LINE_BYTES = 4 * 2**20
"""A longer line is not text (a link to a device, a binary file) and would exhaust memory."""


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


def read_nsmc(
    root: str | os.PathLike, split: str, *, limit: int | None = None, skip_bad: bool = False, download: bool = True
) -> tuple[list[Example], int]:
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
            f"{root}: NSMC is not in {Path(root) / 'nsmc'} and Korpora is not installed to download it ({exc})"
        ) from None
    try:
        fetch_nsmc(str(Path(root).expanduser()), False)
    except Exception as exc:  # noqa: BLE001 - any download failure is the same story for the user
        raise CorpusError(
            f"{root}: NSMC is not in {Path(root) / 'nsmc'} and downloading it failed "
            f"({_one_line(exc)}); put ratings_train.txt and ratings_test.txt there, "
            f"or use --corpus-dir pointing at a copy"
        ) from None


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
        if path.is_symlink():
            raise CorpusError(f"{path}: a symbolic link that leads nowhere (or loops)")
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a corpus file")
    suffix = path.suffix.lower()
    if suffix not in USER_SUFFIXES:
        raise CorpusError(
            f"{path}: unknown corpus format {suffix or '(no extension)'!r}; use one of {', '.join(USER_SUFFIXES)}"
        )
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
            songs.append(Example(normalize_text("\n".join(lines))))
            lines = []
    if lines:
        songs.append(Example(normalize_text("\n".join(lines))))
    return songs, skipped


def _read_rows(
    path: Path, skip_bad: bool, parse: Callable[[int, str], Example | str | None], limit: int | None = None
) -> tuple[list[Example], int]:
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
        return f"polarity must be 긍정, 부정 or empty, got {_preview(parts[1].strip(), 40)}"
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
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        return f"not valid JSON ({_one_line(exc)[:80]})"
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        return "'text' must be a non-empty string"
    if not _is_unicode(text):
        return "'text' holds a lone surrogate escape (\\ud800-\\udfff), which is not text"
    polarity = row.get("polarity")
    if polarity not in (POSITIVE, NEGATIVE, None):
        return f'\'polarity\' must be "긍정", "부정" or null, got {_preview(repr(polarity), 40)}'
    return Example(normalize_text(text), polarity)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize_text(text: str) -> str:
    """A training text with its line structure kept: ``\r\n`` becomes ``\n`` (a lone ``\r`` is no
    line break, as for the file readers), each line loses its trailing spaces, runs of blank
    lines become one stanza break (``\n\n``), and the ends are stripped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _lines(path: Path, *, skip_bad: bool = False):
    """(line number, line without its newline) for a UTF-8 file; a BOM is ignored.

    Bytes that are not UTF-8 are an error naming the line; with ``skip_bad`` the line comes
    back as ``None`` for the caller to count as skipped.
    """
    try:
        if not path.is_file():  # a FIFO, a device, a link to /dev/zero: reading would hang or never end
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise CorpusError(f"{path}: {kind}; a corpus must be a plain text file")
        handle = path.open("rb")
    except FileNotFoundError:
        raise CorpusError(f"{path}: no such file") from None
    except PermissionError:
        raise CorpusError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise CorpusError(
                    f"{path}:{number}: the line is longer than {MAX_LINE_BYTES // 2**20} MiB; is this a text corpus?"
                )
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


def load_corpus(
    spec: str,
    *,
    root: str | os.PathLike = ".",
    val_share: float = 0.1,
    seed: int = 7,
    limit_train: int | None = None,
    limit_val: int | None = None,
    skip_bad: bool = False,
) -> Corpus:
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


MAX_REPEAT = 1000


@dataclass(frozen=True)
class CorpusSpec:
    """One ``--corpus`` value: ``nsmc`` or a path, and how many times an epoch its training
    examples are shown (``poems.jsonl,repeat=8``)."""

    source: str
    repeat: int = 1

    @classmethod
    def parse(cls, text: str) -> CorpusSpec:
        source, sep, option = text.rpartition(",repeat=")
        if not sep:
            return cls(text)
        option = option.strip()
        if not (option.isdigit() and len(option) <= 4 and 1 <= int(option) <= MAX_REPEAT):
            raise CorpusError(
                f"--corpus {_preview(text, 80)}: repeat must be an integer in [1, {MAX_REPEAT}], "
                f"got {_preview(option, 20)}"
            )
        if not source.strip():
            raise CorpusError(f"--corpus {_preview(text, 80)}: name a corpus before ',repeat='")
        return cls(source, int(option))

    def __str__(self) -> str:
        return self.source if self.repeat == 1 else f"{self.source},repeat={self.repeat}"


def load_corpora(
    specs: list[str],
    *,
    root: str | os.PathLike = ".",
    val_share: float = 0.1,
    seed: int = 7,
    limit_train: int | None = None,
    limit_val: int | None = None,
    skip_bad: bool = False,
) -> Corpus:
    """Several corpora as one: each ``spec`` as ``load_corpus`` reads it (limits apply to each),
    its training examples repeated as the spec says. The validation sets are joined unrepeated,
    so ``val_loss`` weighs every corpus by its own size."""
    if not specs:
        raise CorpusError("--corpus: name at least one corpus (nsmc or a file)")
    parsed = [CorpusSpec.parse(spec) for spec in specs]
    parts = [
        load_corpus(
            spec.source,
            root=root,
            val_share=val_share,
            seed=seed,
            limit_train=limit_train,
            limit_val=limit_val,
            skip_bad=skip_bad,
        )
        for spec in parsed
    ]
    if len(parts) == 1 and parsed[0].repeat == 1:
        return parts[0]
    train = [ex for spec, part in zip(parsed, parts) for _ in range(spec.repeat) for ex in part.train]
    val = [ex for part in parts for ex in part.val]
    descriptions = [
        part.description + (f" ×{spec.repeat}" if spec.repeat > 1 else "") for spec, part in zip(parsed, parts)
    ]
    corpus = Corpus(train, val, " + ".join(descriptions), sum(part.skipped for part in parts))
    corpus.notices = [notice for part in parts for notice in part.notices]
    return corpus


def _preview(line: str, width: int = 60) -> str:
    return repr(line if len(line) <= width else line[:width] + "…")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
