"""Generated protobuf/gRPC code for ``protos/mpcdp/v1`` (regenerate with ``make protos``).

Do not edit the ``*_pb2*.py`` files by hand: ``tests/services/test_wire.py`` regenerates
them from ``protos/`` and fails on any difference.
"""
