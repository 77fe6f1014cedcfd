"""The vectorised batch path (spans, lexicon, render) gives exactly what the per-text regular expression gives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcdp.text.embeddings import Embedding
from mpcdp.text.lexicon import Lexicon, PackedTable, pack
from mpcdp.text.render import VocabularyCodes, render
from mpcdp.text.spans import CLITIC_WORDS, split_batch
from mpcdp.text.tokenize import CONTRACTION_HOSTS, apply_case, case_pattern, replace_symbols, split

VOCABULARY = (
    "the", "movie", "is", "not", "do", "can", "will", "it", "are", "have", "would", "am", "shall", "a1",
    "café", "straße", "ǆ", "σοφία", "extraordinarily", "incomprehensibilities", "nine9nine", "0", "ca", "n",
)  # fmt: skip
PIECES = [
    *VOCABULARY, "Movie", "MOVIE", "mOvie", "CAFÉ", "Straße", "STRASSE", "Σοφία", "ΣΟΦΊΑ", "Extraordinarily",
    "don't", "DON'T", "Don\u2019t", "can't", "won\u2019t", "ain't", "it's", "IT'S", "we'll", "they're", "I'd", "'s",
    "n't", "'\u017f", "n\u02bct", "x_y", "snake_case", " ", "  ", ", ", ".", "!\n", "'", "\u2019", "😀", "👨‍👩‍👧",
    "©", "e\u0301", "https://a.org/x.", "ann@b.com", "@bob", "www.x.org", "zorblax", "Zorblax", "\0", "İ", "K", "ǅ",
]  # fmt: skip


@pytest.fixture(scope="module")
def vocabulary():
    vectors = np.arange(len(VOCABULARY) * 3, dtype=np.float32).reshape(-1, 3) ** 1.2
    return Embedding(VOCABULARY, vectors, aliases={"film": "movie"})


def reference(embedding, texts, substitute, placeholder, keep_oov, replacement):
    """The per-text algorithm the batch path replaces: regex split, dict lookups, str methods."""
    out, released = [], []
    for text in texts:
        pieces, keys, glued = split(text)
        for i, (word, key) in enumerate(zip(pieces[1::2], keys, strict=True)):
            index = embedding.index.get(key, -1) if key else -1
            if index >= 0:
                new = embedding.words[substitute(index)]
                new = apply_case(new, case_pattern(word)) if word != word.lower() else new
            else:
                new = word if keep_oov else placeholder
            pieces[2 * i + 1] = " " + new if i in glued and new[:1].isalnum() else new
        runs = 0
        for j in range(0, len(pieces), 2):
            if replacement is None:
                runs += replace_symbols(pieces[j], "")[1]
            else:
                pieces[j] = replace_symbols(pieces[j], replacement)[0]
        out.append("".join(pieces))
        released.append(runs)
    return out, released


def batch_path(embedding, texts, substitute, placeholder, keep_oov, replacement):
    batch = split_batch(texts)
    chosen = Lexicon(embedding.index).ids(batch)
    known = chosen >= 0
    chosen[known] = [substitute(int(i)) for i in chosen[known]]
    out, released = render(batch, chosen, VocabularyCodes.of(embedding.words), placeholder, keep_oov, replacement)
    return out, released.tolist()


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=12).map("".join), max_size=6),
    st.sampled_from([(0, 0), (1, 0), (5, 3)]),
    st.sampled_from([("<unk>", False, "<unk>"), ("#", True, None), ("", False, "")]),
)
def test_batch_path_equals_the_per_text_algorithm(vocabulary, texts, shift, policy):
    size = vocabulary.size

    def substitute(i):
        return (i * shift[0] + shift[1]) % size if shift[0] else i

    assert batch_path(vocabulary, texts, substitute, *policy) == reference(vocabulary, texts, substitute, *policy)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=5))
def test_pieces_and_keys_equal_the_regular_expression_split(texts):
    batch = split_batch(texts)
    literal = dict(zip(batch.literal.tolist(), batch.literal_keys, strict=True))
    got = []
    for i in range(batch.start.size):
        word = batch.text[batch.start[i] : batch.end[i]]
        clitic = int(batch.clitic[i])
        if i in literal:
            key = literal[i]
        elif clitic:
            key = CLITIC_WORDS[clitic - 1] if clitic > 0 else ""
        else:
            key = word.lower()
            key = CONTRACTION_HOSTS.get(key, key) if batch.host[i] else key
        got.append((int(batch.doc[i]), word, key, bool(batch.glued[i])))
    want = []
    for t, text in enumerate(texts):
        pieces, keys, glued = split(text)
        for i, (word, key) in enumerate(zip(pieces[1::2], keys, strict=True)):
            want.append((t, word, key if key.isalnum() else "", i in glued))
    assert got == want


def test_packed_table_finds_exactly_its_keys():
    words = [f"w{i}" for i in range(5000)] + ["abcdefghijklmnop", "abcdefghijklmnoq"]
    first, second = pack(words)
    table = PackedTable(first, second, np.arange(len(words)))
    np.testing.assert_array_equal(table.find(first, second), np.arange(len(words)))
    others = pack(["w5000", "abcdefghijklmnor", "x", "w"])
    assert (table.find(*others) == -1).all()


def test_empty_batches_and_empty_texts(vocabulary):
    for texts in ([], [""], ["", "the", ""], ["\0"]):
        assert batch_path(vocabulary, texts, lambda i: i, "<unk>", False, "<unk>") == (
            list(texts),
            [0] * len(texts),
        )
