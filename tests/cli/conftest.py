"""Command-line tests: the `mpcdp` command, in-process (services.cli.main) or as real processes."""
