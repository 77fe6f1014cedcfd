"""Tokenisation is lossless and splits words the way GloVe does."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mpcdp.text.tokenize import LOWER, MIXED, TITLE, UPPER, apply_case, case_pattern, detokenize, tokenize


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_any_string(text):
    tokens = tokenize(text)
    assert detokenize(tokens) == text
    assert all(t.text for t in tokens)
    # separators and words alternate except where clitics split a word
    assert all(not (a.is_word is False and b.is_word is False) for a, b in zip(tokens, tokens[1:]))


def test_words_punctuation_and_clitics():
    tokens = tokenize("Don't panic,  it's NASA's 2002\tfilm!\n")
    assert [t.text for t in tokens if t.is_word] == ["Do", "n't", "panic", "it", "'s", "NASA", "'s", "2002", "film"]
    assert [t.text for t in tokens if not t.is_word] == [" ", ",  ", " ", " ", "\t", "!\n"]


def test_underscores_and_unicode():
    assert [t.text for t in tokenize("snake_case Café") if t.is_word] == ["snake", "case", "Café"]


def test_case_patterns_round_trip():
    cases = {"movie": LOWER, "Movie": TITLE, "MOVIE": UPPER, "McDonald": MIXED, "I": TITLE, "2002": LOWER}
    for word, pattern in cases.items():
        assert case_pattern(word) == pattern
    for word in ("movie", "Movie", "MOVIE"):
        assert apply_case("movie", case_pattern(word)) == word
    assert apply_case("film", MIXED) == "film"
