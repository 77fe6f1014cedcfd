"""What the text commands are configured with: the flags they share (which embedding, its neighbour cache,
the out-of-vocabulary and symbol policies), the sanitiser those flags describe, and the text node's work
limits. Apart from the node's gRPC server, so that building a parser (``mpcdp --help``) loads no gRPC."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mpcdp.text.embeddings import DEFAULT_VOCABULARY_SIZE, FORMATS, load_embedding
from mpcdp.text.neighbors import DEFAULT_NEIGHBORS
from mpcdp.text.sanitizer import (
    DEFAULT_PLACEHOLDER,
    OOV_KEEP,
    OOV_PLACEHOLDER,
    SYMBOL_POLICIES,
    SYMBOLS_PLACEHOLDER,
    Sanitizer,
    load_sanitizer,
)

DEFAULT_MAX_TEXT_CHARS = 100_000
_UTF8_MAX = 4  # bytes per character at most


@dataclass(frozen=True)
class TextLimits:
    """What the node's sanitising work, and one client's share of it, may take at a time."""

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    workers: int = 2  # sanitising threads
    queue: int = 16  # requests queued or running, all clients together
    per_client: int = 2  # requests queued or running for one client

    def __post_init__(self):
        for name in ("max_text_chars", "workers", "queue", "per_client"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    @property
    def max_message_bytes(self) -> int:
        """A request can hold at most this many bytes: its text in UTF-8 plus room for the other fields."""
        return _UTF8_MAX * self.max_text_chars + 4096


def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the text commands: which embedding, neighbour cache, OOV and symbol policy."""
    g = parser.add_argument_group("embedding")
    g.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCABULARY_SIZE,
        help="keep the N most frequent words (default %(default)s)",
    )
    g.add_argument("--embedding", type=Path, help="an embedding file instead of the built-in GloVe 6B 50d")
    g.add_argument("--format", choices=FORMATS, default="glove", help="format of --embedding")
    g.add_argument("--vocabulary", type=Path, help="word list for --format npy (one word per line)")
    g.add_argument(
        "--all-entries",
        action="store_true",
        help="substitute from every embedding entry, punctuation and word fragments included "
        "(default: only entries that are words the tokeniser can produce; Delta and "
        "Delta0, so epsilon's minimum, are computed on the set used)",
    )
    g.add_argument(
        "--approximate-nn",
        action="store_true",
        help="multivariate Laplace finds the word nearest the noisy vector among the words of the 8 "
        "nearest of about sqrt(n) lists (224 for 50,000 words) instead of all: many times faster, the "
        "same privacy (decoding is post-processing), but a different word than exact search for about "
        "1 token in 11 on GloVe 50k (default: exact search)",
    )
    g.add_argument(
        "--neighbors",
        type=int,
        default=DEFAULT_NEIGHBORS,
        help="cached nearest neighbours per word (default %(default)s)",
    )
    g.add_argument("--cache-dir", type=Path, help="neighbour cache folder (default $MPCDP_CACHE or ~/.cache/mpcdp)")
    g.add_argument(
        "--keep-oov",
        action="store_true",
        help="release out-of-vocabulary words unperturbed (NOT private; default: placeholder)",
    )
    g.add_argument(
        "--symbols",
        choices=SYMBOL_POLICIES,
        default=SYMBOLS_PLACEHOLDER,
        help="emoji and other symbols: keep them (released unperturbed, NOT private), replace each "
        "run by the placeholder, or drop them (default %(default)s)",
    )
    g.add_argument(
        "--placeholder",
        default=DEFAULT_PLACEHOLDER,
        help="replacement for out-of-vocabulary words and symbols (default %(default)s)",
    )


def sanitizer_from_args(args) -> Sanitizer:
    if args.vocab_size < 2:
        raise ValueError(f"--vocab-size must be at least 2, got {args.vocab_size}")
    embedding = None
    if args.embedding is not None:
        embedding = load_embedding(args.embedding, args.format, args.vocab_size, args.vocabulary)
    return load_sanitizer(
        args.vocab_size,
        args.neighbors,
        args.cache_dir,
        OOV_KEEP if args.keep_oov else OOV_PLACEHOLDER,
        args.placeholder,
        embedding,
        symbols=args.symbols,
        words_only=not args.all_entries,
        approximate_nn=args.approximate_nn,
    )
