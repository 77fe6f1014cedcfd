"""The text node: a gRPC adapter over :mod:`mpcdp.text.sanitizer`.

A party runs it inside its own trust boundary; texts are sanitised before they
leave it. The node is a member of the federation (role ``text``): it listens
with its federation certificate and serves only clients whose certificate the
federation's CA signed (:class:`services.tls.Identity`). It serves
``mpcdp.v1.TextSanitizer``, gRPC health checking (SERVING once the embedding
and neighbour table are loaded) and reflection. Neither texts nor their
sanitised forms are logged or echoed in errors.
"""

from __future__ import annotations

import argparse
import math
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mpcdp.prg import system_random
from mpcdp.text.embeddings import DEFAULT_VOCABULARY_SIZE, FORMATS, load_embedding
from mpcdp.text.mechanisms import MECHANISMS, EpsilonTooSmallError, truncated_gumbel_min_epsilon
from mpcdp.text.neighbours import DEFAULT_NEIGHBOURS
from mpcdp.text.sanitizer import DEFAULT_PLACEHOLDER, OOV_KEEP, OOV_PLACEHOLDER, Sanitizer, load_sanitizer
from services.tls import Identity
from services.wire.mpcdp.v1 import text_pb2, text_pb2_grpc

DEFAULT_MAX_TEXT_CHARS = 100_000
SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextSanitizer"].full_name


class TextSanitizerService(text_pb2_grpc.TextSanitizerServicer):
    def __init__(self, sanitizer: Sanitizer, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS):
        self.sanitizer, self.max_text_chars = sanitizer, max_text_chars

    def _check(self, request, context) -> None:
        if not request.text.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: text is empty")
        if len(request.text) > self.max_text_chars:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request {request.id!r}: text has {len(request.text)} characters, "
                          f"more than this node's limit of {self.max_text_chars}")
        if request.mechanism not in MECHANISMS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request {request.id!r}: unknown mechanism {request.mechanism!r}; "
                          f"expected one of {', '.join(MECHANISMS)}")
        if not (math.isfinite(request.epsilon) and request.epsilon > 0):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"request {request.id!r}: epsilon must be a positive finite number")

    def Sanitize(self, request_iterator, context):
        rng = system_random("text-node")
        for request in request_iterator:
            self._check(request, context)
            try:
                [result] = self.sanitizer.sanitize([request.text], request.mechanism, request.epsilon, rng)
            except EpsilonTooSmallError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {request.id!r}: {exc}")
            c = result.cost
            yield text_pb2.SanitizeResponse(id=request.id, text=result.text, cost=text_pb2.PrivacyCost(
                mechanism=c.mechanism, epsilon_per_word=c.epsilon_per_word,
                words_perturbed=c.words_perturbed, oov_words=c.oov_words,
                oov_released=c.oov_released, text_epsilon_bound=c.epsilon_text_bound))

    def Describe(self, request, context):
        s = self.sanitizer
        return text_pb2.DescribeResponse(
            vocabulary_size=s.embedding.size, dimension=s.embedding.dim,
            embedding_fingerprint=s.table.fingerprint, diameter=s.table.delta_max,
            min_distance=s.table.delta_min, max_text_chars=self.max_text_chars, oov_policy=s.oov,
            mechanisms=[
                text_pb2.MechanismInfo(name="truncated-gumbel", min_epsilon_exclusive=truncated_gumbel_min_epsilon(
                    s.embedding.size, s.table.delta_min)),
                text_pb2.MechanismInfo(name="multivariate-laplace", min_epsilon_exclusive=0.0),
            ])


def build_server(sanitizer: Sanitizer, address: str, identity: Identity,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, max_workers: int = 4) -> tuple[grpc.Server, int]:
    """A started server on ``address`` (port 0: any free port), health SERVING; returns it and its port.

    ``identity`` gives the transport: mutual TLS under the federation's CA, or
    plaintext when it is insecure.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    text_pb2_grpc.add_TextSanitizerServicer_to_server(TextSanitizerService(sanitizer, max_text_chars), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    port = identity.add_port(server, address)
    if port == 0:
        raise OSError(f"could not listen on {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the text commands: which embedding, neighbour cache and OOV policy."""
    g = parser.add_argument_group("embedding")
    g.add_argument("--vocab-size", type=int, default=DEFAULT_VOCABULARY_SIZE,
                   help="keep the N most frequent words (default %(default)s)")
    g.add_argument("--embedding", type=Path, help="an embedding file instead of the built-in GloVe 6B 50d")
    g.add_argument("--format", choices=FORMATS, default="glove", help="format of --embedding")
    g.add_argument("--vocabulary", type=Path, help="word list for --format npy (one word per line)")
    g.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS,
                   help="cached nearest neighbours per word (default %(default)s)")
    g.add_argument("--cache-dir", type=Path,
                   help="neighbour cache folder (default $MPCDP_CACHE or ~/.cache/mpcdp)")
    g.add_argument("--keep-oov", action="store_true",
                   help="release out-of-vocabulary words unperturbed (NOT private; default: placeholder)")
    g.add_argument("--placeholder", default=DEFAULT_PLACEHOLDER,
                   help="replacement for out-of-vocabulary words (default %(default)s)")


def sanitizer_from_args(args) -> Sanitizer:
    if args.vocab_size < 2:
        raise ValueError(f"--vocab-size must be at least 2, got {args.vocab_size}")
    embedding = None
    if args.embedding is not None:
        embedding = load_embedding(args.embedding, args.format, args.vocab_size, args.vocabulary)
    return load_sanitizer(args.vocab_size, args.neighbours, args.cache_dir,
                          OOV_KEEP if args.keep_oov else OOV_PLACEHOLDER, args.placeholder, embedding)
