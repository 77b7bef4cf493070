"""Orchestration of one run: the cell loop, targets and managed servers, the manifest, resume, progress."""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """`bench.run(scenario, out=...)` calls bench.api.run; `bench.run.runner` stays a module.

    The issue's API is spelled bench.run(...), and bench/run/ is the orchestration package of the
    tree map: a callable package keeps both (the call imports bench.api only when made).
    """

    def __call__(self, scenario, out=None, **options):  # noqa: ANN001, ANN003, ANN204
        from bench.api import run as _run

        return _run(scenario, out, **options)


_sys.modules[__name__].__class__ = _CallableModule
