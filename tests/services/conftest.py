"""Service tests: real gRPC servers in-process. Shared fixtures: a federation cluster and survey aggregators."""

from tests.support.federation import certs, cluster
from tests.support.survey_grpc import fed

__all__ = ["certs", "cluster", "fed"]
