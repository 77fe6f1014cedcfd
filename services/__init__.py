"""mpcdp services: gRPC nodes, TLS configuration and the ``mpcdp`` command.

Thin adapters over the pure library in :mod:`mpcdp`: they move bytes, check
who is talking, and call the library's state machines.
"""
