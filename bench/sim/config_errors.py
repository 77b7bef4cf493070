"""Errors of the simulator's configuration (the CLI turns them into one line, exit 2)."""


class SimConfigError(Exception):
    """A bad OLLAMA_* value, flag, catalog file or GPU name: str() is the one-line message."""
