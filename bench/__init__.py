"""bench: throughput-and-memory benchmarking for Ollama servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bench")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"

__all__ = ["__version__", "api", "load_run"]


def load_run(path):  # noqa: ANN001, ANN201 - thin re-export, typed in bench.api
    """Load a run directory into DataFrames, summary included (see bench.api.load_run)."""
    from bench.api import load_run as _load_run

    return _load_run(path)


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 module attribute
    # `import bench; bench.api.run(...)`: the Python API, imported on first use (it pulls in pandas).
    if name == "api":
        import importlib

        return importlib.import_module("bench.api")
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
