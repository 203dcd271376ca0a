"""Fuzzed corpus files through ``kolyric.training.corpora``: invalid UTF-8, stray tabs and
quotes, empty lines, CRLF, a BOM, deep JSON, long lines. Each file either gives exactly the
examples its format says (checked against a reference reading of the documented format) or
a ``CorpusError`` naming the file and, for a bad row, the first bad line."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolyric.training.corpora import CorpusError, Example, load_corpus, read_user_file

from tests.reliability._util import count

POLARITY_WORDS = {
    "긍정": "긍정",
    "부정": "부정",
    "1": "긍정",
    "0": "부정",
    "positive": "긍정",
    "negative": "부정",
    "pos": "긍정",
    "neg": "부정",
    "": None,
    "none": None,
    "null": None,
    "-": None,
}

FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            b"",
            b" ",
            b"\t",
            b"\r",
            b"  \t ",
            "사랑해 너를".encode(),
            b"hello world",
            "\ufeff가사".encode(),
            b'"quoted"',
            b"'single'",
            b'say "hi\tthere"',
            "좋아\t긍정".encode(),
            "슬퍼\t부정\t".encode(),
            "노래\tPOS".encode(),
            "노래\t중립".encode(),
            "\t부정".encode(),
            b"text\tpolarity",
            b"TEXT",
            b"\xff\xfe",
            b"\xc3\x28",
            b"\x80abc",
            "가".encode()[:2],
            b"\xed\xa0\x80",  # invalid UTF-8
            b'{"text": "\xec\x95\x84", "polarity": "\xea\xb8\x8d\xec\xa0\x95"}',
            b'{"text": "a"}',
            b'{"text": ""}',
            b'{"text": 3}',
            b'["a"]',
            b'{"text": "a", "polarity": NaN}',
            b"{",
            b'{"text": "a", "polarity": "x"}',
            b"[" * 5000,
            b'{"a":' * 3000,
            b"null",
            b"\x00\x01",
            "\u2028줄 \u3000".encode(),
            b"x" * 10_000,
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12).map(
        lambda s: s.encode("utf-8")
    ),
    st.binary(max_size=6).filter(lambda b: b"\n" not in b),
)

FILES = st.fixed_dictionaries(
    {
        "lines": st.lists(FRAGMENTS, max_size=12),
        "bom": st.booleans(),
        "crlf": st.booleans(),
        "trailing_newline": st.booleans(),
        "suffix": st.sampled_from([".txt", ".tsv", ".jsonl", ".TSV", ".csv", ""]),
        "skip_bad": st.booleans(),
    }
)


def file_bytes(spec: dict) -> bytes:
    sep = b"\r\n" if spec["crlf"] else b"\n"
    body = sep.join(spec["lines"]) + (sep if spec["trailing_newline"] and spec["lines"] else b"")
    return (b"\xef\xbb\xbf" if spec["bom"] else b"") + body


class Bad(Exception):
    def __init__(self, line: int):
        self.line = line


def reference(data: bytes, suffix: str, skip_bad: bool) -> tuple[list[Example], int]:
    """The documented formats, read independently: (examples, skipped) or Bad(first bad line)."""
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    decoded: list[tuple[int, str | None]] = []
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            decoded.append((number, raw.decode("utf-8").rstrip("\r\n")))
        except UnicodeDecodeError:
            decoded.append((number, None))
    examples: list[Example] = []
    skipped = 0

    def bad(number: int) -> None:
        nonlocal skipped
        if not skip_bad:
            raise Bad(number)
        skipped += 1

    if suffix == ".txt":
        song: list[str] = []
        for number, line in decoded:
            if line is None:
                bad(number)
            elif line.strip():
                song.append(line.strip())
            elif song:
                examples.append(Example("\n".join(song)))
                song = []
        if song:
            examples.append(Example("\n".join(song)))
    elif suffix == ".tsv":
        for number, line in decoded:
            if line is None:
                bad(number)
                continue
            if not line.strip():
                continue
            cols = line.split("\t")
            if number == 1 and [c.strip().lower() for c in cols] in (["text"], ["text", "polarity"]):
                continue
            if (
                len(cols) > 2
                or not cols[0].strip()
                or (len(cols) == 2 and cols[1].strip().lower() not in POLARITY_WORDS)
            ):
                bad(number)
                continue
            examples.append(
                Example(cols[0].strip(), POLARITY_WORDS[cols[1].strip().lower()] if len(cols) == 2 else None)
            )
    else:  # .jsonl
        for number, line in decoded:
            if line is None:
                bad(number)
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                bad(number)
                continue
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("text"), str)
                or not row["text"].strip()
                or row.get("polarity") not in ("긍정", "부정", None)
            ):
                bad(number)
                continue
            examples.append(Example(row["text"].strip(), row.get("polarity")))
    return examples, skipped


LINE_RE = re.compile(r":(\d+): ")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(FILES, st.floats(min_value=0.01, max_value=0.99), st.integers(0, 2**32))
def test_user_files_give_their_examples_or_name_the_file_and_line(spec, share, seed):
    count("fuzz: corpus files (read_user_file + load_corpus)")
    data = file_bytes(spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"corpus{spec['suffix']}"
        path.write_bytes(data)
        suffix = spec["suffix"].lower()
        try:
            examples, skipped = read_user_file(path, skip_bad=spec["skip_bad"])
        except CorpusError as exc:
            message = str(exc)
            assert message.startswith(str(path)), message
            if suffix not in (".txt", ".tsv", ".jsonl"):
                assert "unknown corpus format" in message
                return
            try:
                want, _ = reference(data, suffix, spec["skip_bad"])
            except Bad as bad:
                assert f"{path}:{bad.line}: " in message, (message, bad.line)
                return
            assert not want and "the corpus is empty" in message, message
            return
        assert suffix in (".txt", ".tsv", ".jsonl"), f"{suffix!r} accepted"
        want, want_skipped = reference(data, suffix, spec["skip_bad"])  # Bad here = a silently accepted bad row
        assert examples == want
        assert skipped == want_skipped
        # the whole pipeline's split: nothing lost, nothing invented
        try:
            corpus = load_corpus(str(path), val_share=share, seed=seed, skip_bad=spec["skip_bad"])
        except CorpusError as exc:
            assert len(examples) < 2 and "at least 2 examples" in str(exc)
            return
        assert sorted(corpus.train + corpus.val, key=repr) == sorted(examples, key=repr)
        assert corpus.train and corpus.val and corpus.skipped == skipped


def test_one_megabyte_lines_bom_and_a_bad_byte_far_down(tmp_path):
    count("corpus: 1 MB lines")
    big = "가나다라 " * 200_000  # 1 MB of text in one line (3 bytes a syllable)
    path = tmp_path / "big.txt"
    path.write_bytes(b"\xef\xbb\xbf" + big.encode() + b"\n\n" + big.encode() + b"\n")
    examples, _ = read_user_file(path)
    assert [len(e.text) for e in examples] == [len(big.strip())] * 2
    tsv = tmp_path / "big.tsv"
    tsv.write_bytes(b"\xef\xbb\xbftext\tpolarity\n" + (big.encode() + "\t긍정\n".encode()) * 2 + b"ok\t\xff\n")
    with pytest.raises(CorpusError, match=re.escape(f"{tsv}:4: not UTF-8")):
        read_user_file(tsv)
    examples, skipped = read_user_file(tsv, skip_bad=True)
    assert len(examples) == 2 and skipped == 1


NSMC_FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            b"id\tdocument\tlabel",
            "1\t좋은 영화\t1".encode(),
            "2\t별로\t0".encode(),
            b"3\t\t1",
            "4\t 공백 \t 1 ".encode(),
            b"5\tno label\t",
            b"6\ttoo\tmany\t1",
            b"7\tlabel\t2",
            b"",
            b"\t\t",
            '8\t"따옴표\t1'.encode(),
            b"9\t\xff\t1",
            b"\xef\xbb\xbfid\tdocument\tlabel",
        ]
    ),
    st.tuples(
        st.integers(0, 10**9),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\t"), max_size=10),
        st.sampled_from(["0", "1", "01", "x"]),
    ).map(lambda t: f"{t[0]}\t{t[1]}\t{t[2]}".encode()),
)


def reference_nsmc(data: bytes, skip_bad: bool) -> tuple[list[Example], int]:
    examples, skipped = [], 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            if not skip_bad:
                raise Bad(number) from None
            skipped += 1
            continue
        if number == 1 and line.startswith("id\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[2].strip() not in ("0", "1"):
            if not line.strip():
                continue
            if not skip_bad:
                raise Bad(number)
            skipped += 1
            continue
        if parts[1].strip():
            examples.append(Example(parts[1].strip(), "긍정" if parts[2].strip() == "1" else "부정"))
    return examples, skipped


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NSMC_FRAGMENTS, max_size=10), st.lists(NSMC_FRAGMENTS, max_size=5), st.booleans())
def test_nsmc_files_give_their_rows_or_name_the_file_and_line(train_lines, test_lines, skip_bad):
    count("fuzz: NSMC-format files (load_corpus nsmc)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "nsmc").mkdir()
        files = {"train": b"\n".join(train_lines) + b"\n", "test": b"\n".join(test_lines)}
        for split, data in files.items():
            (root / "nsmc" / f"ratings_{split}.txt").write_bytes(data)
        try:
            corpus = load_corpus("nsmc", root=root, skip_bad=skip_bad)
        except CorpusError as exc:
            message = str(exc)
            assert "ratings_" in message, message
            for split, data in files.items():
                if f"ratings_{split}.txt" not in message:
                    continue
                try:
                    want, _ = reference_nsmc(data, skip_bad)
                except Bad as bad:
                    assert f"ratings_{split}.txt:{bad.line}: " in message, (message, bad.line)
                else:
                    assert not want and "empty" in message, message
            return
        want_train, skipped_train = reference_nsmc(files["train"], skip_bad)
        want_val, skipped_val = reference_nsmc(files["test"], skip_bad)
        assert (corpus.train, corpus.val, corpus.skipped) == (want_train, want_val, skipped_train + skipped_val)


def test_deeply_nested_jsonl_row_names_the_line(tmp_path):
    """Found by the fuzzing above: a RecursionError traceback before the fix."""
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "좋아"}\n' + "[" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(f"{path}:2: not valid JSON (nested too deeply)")):
        read_user_file(path)
    assert read_user_file(path, skip_bad=True) == ([Example("좋아")], 1)
