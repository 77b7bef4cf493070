"""Orchestration of one run: the cell loop, targets and managed servers, the manifest, resume, progress."""
