"""Line breaks survive the engine: cleaning keeps them (folding runs to a stanza break), the
incremental detokenizer releases them, the vocabulary profile knows line ends from word breaks,
and newline tokens round-trip through a tokenizer made as kolyric's trainer makes them (the
tiny stem/ending tokenizer of tests/word_models.py) and through the stream."""

from __future__ import annotations

import pytest

from kolyric.engine.prompt import Detokenizer, clean_output, clean_piece, line_separator

from tests import word_models


@pytest.fixture(scope="module")
def tok():
    return word_models.make_tokenizer("newline")


def ids_of(tok, *tokens):
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def test_cleaning_keeps_lines_and_folds_runs_to_a_stanza():
    assert clean_output("좋아\n싶어") == "좋아\n싶어"
    assert clean_output("좋아 \n\n\n\n 싶어\n") == "좋아\n\n싶어"
    assert clean_output("좋아\n \n \n싶어") == "좋아\n\n싶어"  # blank lines of spaces are blank lines
    assert clean_output("가\r\n나\x1b[2J다\x07") == "가\n나[2J다"  # \r and other controls never reach a screen
    assert clean_piece("\n\n") == "\n\n" and clean_piece("가\t나") == "가\t나"


def test_newline_tokens_round_trip(tok):
    text = "좋아 싶어\n사랑해 봄\n\n꿈 별"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(ids)
    assert "\n" in pieces and "\n\n" in pieces and tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert line_separator(tok) == "\n"
    assert line_separator(word_models.make_tokenizer("plain")) == " "  # no newline token: "\n" is <unk>


def test_the_detokenizer_releases_line_breaks(tok):
    detok = Detokenizer(tok, [], tok.unk_token)
    ids = ids_of(tok, "좋", "아", "\n", "▁봄", "\n\n", "\n", "▁꿈", "\n", "\n")
    pieces = [detok.push(t) for t in ids]
    # no spaces at a line's start, and never more than two newlines in a row, across pieces too
    assert "".join(pieces) == "좋아\n봄\n\n꿈\n\n"
    assert pieces[2] == "\n" and pieces[3] == "봄" and pieces[5] == ""


def test_a_line_the_constraint_starts_is_streamed_as_a_line(tok):
    detok = Detokenizer(tok, [], tok.unk_token)
    pieces = [detok.push(t, new_line=(k == 2)) for k, t in enumerate(ids_of(tok, "좋", "다", "▁꿈", "▁별"))]
    assert pieces == ["좋", "다", "\n꿈", " 별"]


def test_a_run_of_spaces_streams_as_one_space(tok):
    """A lone space token before a spaced word (the model's "▁", "▁별") streams as the final text
    shows it, one space; so do spaces inside a piece. A line still starts with no space."""
    detok = Detokenizer(tok, [], tok.unk_token)
    pieces = [detok.push(t) for t in ids_of(tok, "좋", "▁", "▁별", "▁", "▁", "▁꿈", "\n", "▁", "▁봄")]
    assert (
        "".join(pieces)
        == "좋 별 꿈\n봄"
        == clean_output(tok.decode(ids_of(tok, "좋", "▁", "▁별", "▁", "▁", "▁꿈", "\n", "▁", "▁봄")))
    )
    assert pieces[1] == " " and pieces[2] == "별"


def test_no_repeat_n_grams_let_a_line_end_as_another_line_ended(tok):
    """A line ending on the same two tokens as an earlier line (a refrain, a rhyme) may still
    end there: the n-gram rule never bans a line break (a constrained line whose break it banned
    had no token left). Other repeats stay banned."""
    import torch

    from kolyric.engine import sampling
    from kolyric.engine.prompt import line_break_ids
    from kolyric.engine.settings import preset

    breaks = line_break_ids(tok)
    assert breaks == set(ids_of(tok, "\n", "\n\n"))
    assert line_break_ids(word_models.make_tokenizer("plain")) == frozenset()  # no newline token
    seq = ids_of(tok, "▁꿈", "좋", "아", "\n", "▁별", "▁꿈", "좋", "아", "▁꿈", "좋", "아")
    procs = sampling.processor_chain(preset("greedy", no_repeat_ngram_size=3), 1, None, tok.eos_token_id, tok)
    scores = procs(torch.tensor([seq]), torch.zeros(1, len(tok)))
    assert scores[0, ids_of(tok, "\n")[0]] == 0  # "좋 아 \n" was seen: the break stays allowed
    assert scores[0, ids_of(tok, "▁꿈")[0]] == -float("inf")  # "좋 아 꿈" was seen: banned


def test_the_profile_tells_line_ends_from_word_breaks(tok):
    from kolyric.engine.lyric.vocab_profile import profile_for

    profile = profile_for(tok, len(tok))
    line, stanza, space, stem, ending, spaced = ids_of(tok, "\n", "\n\n", "▁", "좋", "아", "▁싶")
    pure = profile.pure_breaks()
    assert profile.has_newline_token and bool(pure[line]) and not bool(pure[stanza])  # one line a break
    breaks = profile.word_break
    assert all(bool(breaks[t]) for t in (line, stanza, space, spaced, tok.eos_token_id))
    assert not bool(breaks[stem]) and not bool(breaks[ending]) and not bool(breaks[tok.pad_token_id])


def test_the_stream_keeps_newlines_and_marks_them(models_dir):
    from kolyric.engine.loading import load_model
    from kolyric.engine.results import DoneEvent, GenerationRequest, TokenEvent
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    path = word_models.model_dir(models_dir / "word-models", "newline")
    gen = Generator(load_model(str(path), device="cpu"))
    text = " 좋아\n사랑해 봄\n\n꿈"
    forced = tuple(gen.tokenizer.encode(text, add_special_tokens=False))
    events = list(
        gen.stream(GenerationRequest("별", None, preset("greedy", max_length=len(forced)), forced_ids=forced))
    )
    pieces = [e for e in events if isinstance(e, TokenEvent)]
    cand = next(e for e in events if isinstance(e, DoneEvent)).result.candidates[0]
    assert "".join(e.text for e in pieces) == text
    assert [e.line_break for e in pieces] == [e.token.text in ("\n", "\n\n") for e in pieces]
    assert cand.text == text.strip() and cand.full_text == "별 " + text.strip()


def test_an_empty_prompt_starts_the_next_line_after_the_draft():
    from kolyric.engine.prompt import prompt_body

    assert prompt_body("", ["봄이 오면", "너를 만나네"], "\n") == "봄이 오면\n너를 만나네\n"
    assert prompt_body("또 한 줄", ["봄이 오면"], "\n") == "봄이 오면\n또 한 줄"  # a typed line is continued
    assert prompt_body("", ["봄이 오면"], " ") == "봄이 오면"  # no newline token: nothing to end with
    assert prompt_body("", [], "\n") == ""
