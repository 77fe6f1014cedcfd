"""Subcommands of ``mpcdp``: each module here defines ``register(subparsers)``.

The CLI discovers them, so adding a command is adding a module.
"""
