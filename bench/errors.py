"""Errors a user can cause. The CLI catches BenchError once and prints one line, exit 2."""


class BenchError(Exception):
    """Base of every user-facing error: its str() is the one line shown to the user."""

    exit_code = 2


class ScenarioError(BenchError):
    """A scenario file is unreadable or invalid (message names file, line and field)."""


class TargetError(BenchError):
    """The server under test cannot be reached, failed to start, or lacks a model."""


class RunDirError(BenchError):
    """A run directory or baseline file is missing or unreadable."""


class UsageError(BenchError):
    """A command-line value is malformed (e.g. --slo ttft_p95=fast)."""
