"""The known deviations: differences between `bench sim` and real Ollama we keep, each with its reason.

A YAML file (shipped: known_deviations.yaml beside this module) of entries
`{probe, field, reason}`; `field` may be an fnmatch pattern ("size*"). A difference that matches
an entry is reported as a known deviation; any other fails `bench conformance` (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path

import yaml

from bench.inputs.yaml12 import load_yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import UsageError

SHIPPED = "known_deviations.yaml"


class KnownDeviation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = Field(min_length=1)
    field: str = Field(min_length=1)
    reason: str = Field(min_length=10)


class _KnownFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deviations: list[KnownDeviation] = Field(default_factory=list)


@dataclass(frozen=True)
class KnownList:
    source: str
    deviations: tuple[KnownDeviation, ...]

    def reason_for(self, probe: str, field: str) -> str | None:
        for entry in self.deviations:
            if entry.probe == probe and fnmatchcase(field, entry.field):
                return entry.reason
        return None


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where}: {detail['msg']}"


def parse_known(text: str, source: str) -> KnownList:
    """The deviations in `text`; UsageError naming the file, line or field when it is malformed."""
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{source}:{line} not valid YAML ({getattr(error, 'problem', None) or error})") from None
    try:
        parsed = _KnownFile.model_validate(raw if raw is not None else {})
    except ValidationError as error:
        raise UsageError(f"{source}: {_first_error(error)}") from None
    return KnownList(source, tuple(parsed.deviations))


def load_known(path: Path | None = None) -> KnownList:
    """The file the user named, else the shipped list."""
    if path is None:
        text = resources.files("bench.conformance").joinpath(SHIPPED).read_text(encoding="utf-8")
        return parse_known(text, SHIPPED)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    return parse_known(text, str(path))
