"""Orchestration of one run: the cell loop, targets and managed servers, the manifest, resume, progress.

The Python API's entry point is bench.api.run (not this package)."""
