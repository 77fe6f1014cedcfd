"""Library tests: pure code, no grpc, no services (tests/lib/test_layers.py guards the layering)."""
