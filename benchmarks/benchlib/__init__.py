"""Helpers the benchmark scripts share (importable because a script's own folder is first on ``sys.path``)."""
