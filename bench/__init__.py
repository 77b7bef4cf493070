"""bench: throughput-and-memory benchmarking for Ollama servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bench")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

__all__ = ["__version__", "load_run"]


def load_run(path):  # noqa: ANN001, ANN201 - thin re-export, typed in bench.records
    """Load a run directory into DataFrames (see bench.records.load_run)."""
    from bench.records import load_run as _load_run

    return _load_run(path)
