"""Tokenisation is lossless and splits words the way GloVe does."""

import itertools

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
    assert all(not (a.is_word is False and b.is_word is False) for a, b in itertools.pairwise(tokens))


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


def words(text):
    return [(t.text, t.lookup) for t in tokenize(text) if t.is_word]


def test_curly_and_straight_apostrophes_are_contractions_alike():
    for apostrophe in ("'", "\u2019"):
        text = f"I don{apostrophe}t know, it{apostrophe}s fine, we{apostrophe}ll see; can{apostrophe}t WON{apostrophe}T"
        assert [lookup for _, lookup in words(text)] == [
            "i",
            "do",
            "not",
            "know",
            "it",
            "is",
            "fine",
            "we",
            "will",
            "see",
            "can",
            "not",
            "will",
            "not",
        ]
        assert detokenize(tokenize(text)) == text


def test_fragments_are_hosts_only_before_nt():
    assert words("ca wo") == [("ca", "ca"), ("wo", "wo")]
    assert words("ca n't") == [("ca", "ca"), ("n't", "not")]


def test_urls_mentions_and_emails_are_single_non_vocabulary_tokens():
    text = "see https://example.com/a?b=1. or www.x.org, mail ann.lee@mail.example.com @bob_2!"
    units = [t.text for t in tokenize(text) if t.is_word and not t.lookup]
    assert units == ["https://example.com/a?b=1", "www.x.org", "ann.lee@mail.example.com", "@bob_2"]
    assert detokenize(tokenize(text)) == text


def test_emoji_are_separators_and_symbol_runs_are_found():
    from mpcdp.text.tokenize import replace_symbols

    text = "great\U0001f600\U0001f600 film \U0001f468\u200d\U0001f469\u200d\U0001f467 \u00a9 2024 \u20ac5 $5"
    assert [t.text for t in tokenize(text) if t.is_word] == ["great", "film", "2024", "5", "5"]
    seps = "".join(t.text for t in tokenize(text) if not t.is_word)
    assert replace_symbols(seps, "#") == ("#  # #  # $", 4)  # emoji, family (one ZWJ run), ©, €
    assert replace_symbols("a, b.", "#") == ("a, b.", 0)


def test_vocabulary_words():
    from mpcdp.text.tokenize import is_vocabulary_word

    assert [
        w
        for w in ["the", "2002", "café", ",", "n't", "'s", "ca", "wo", "e-mail", "u.s.", "Paris", "--", "..."]
        if is_vocabulary_word(w)
    ] == ["the", "2002", "café"]
