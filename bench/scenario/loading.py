"""The scenario file: every problem as one `FILE:LINE: field.path: message` line (with
did-you-mean), `parse_scenario`, `load_scenario` and the JSON Schema."""

from __future__ import annotations

import difflib
import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bench.errors import ScenarioError
from bench.escape import plain_terminal
from bench.scenario.model import _MODEL_NAMES, Scenario
from bench.scenario.yaml_lines import (
    _compose_and_construct,
    _line_for,
    _line_number,
)


def _located(error: dict[str, Any], root: yaml.Node | None) -> tuple[int, list[str], str]:
    message: str = error["msg"]
    message = message.removeprefix("Value error, ")
    loc = tuple(error["loc"])
    # Cross-field checks name the field they blame: "rate_rps: ...". Point at that field's line.
    named = re.match(r"^([A-Za-z_][A-Za-z0-9_]*): (.*)$", message)
    if named is not None and error["type"] == "value_error":
        loc = loc + (named.group(1),)
        message = named.group(2)
    if error["type"] == "extra_forbidden":
        message = "unknown field" + _did_you_mean(loc)
    line, path = _line_for(root, loc)
    return line, path, message


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """` (did you mean concurrency?)` for a misspelt field name, else ""."""
    model: Any = Scenario
    for part in loc[:-1]:
        field_info = model.model_fields.get(part) if isinstance(part, str) else None
        if field_info is None:
            continue  # a list index or a union tag: stay at this model
        nested = _model_in(field_info.annotation)
        if nested is None:
            return ""
        model = nested
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The scenario model inside an annotation such as `ServerBlock | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _is_union_tag(part: Any) -> bool:
    # pydantic names union branches "list[int]", "function-after[...]", "str", "Distribution".
    return isinstance(part, str) and (
        "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none"}
        or part in _MODEL_NAMES
    )


def _problem_key(error: dict[str, Any]) -> tuple[Any, ...]:
    """Errors of one mistake share this key: the location up to the first union branch."""
    key: list[Any] = []
    for part in error["loc"]:
        if _is_union_tag(part):
            break
        key.append(part)
    return tuple(key)


def _format_errors(errors: list[dict[str, Any]], root: yaml.Node | None, source: str) -> list[str]:
    """One line per mistake, in file order.

    For union fields pydantic reports one error per branch. The branch whose location goes
    deepest into the user's YAML, and that is not a mere type mismatch, explains it best.
    """
    by_mistake: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        by_mistake.setdefault(_problem_key(error), []).append(error)

    def score(error: dict[str, Any]) -> tuple[int, int]:
        _, path, _ = _located(error, root)
        return (len(path), 0 if error["type"].endswith("_type") else 1)

    lines: list[tuple[int, str]] = []
    for candidates in by_mistake.values():
        line, path, message = _located(max(candidates, key=score), root)
        dotted = ".".join(path).replace(".[", "[") or "(top level)"
        # Keys are the user's text: a newline or an escape in one must not break the line.
        problem = f"{source}:{line}: {plain_terminal(dotted)}: {plain_terminal(message)}"
        if problem not in (text for _, text in lines):
            lines.append((line, problem))
    return [text for _, text in sorted(lines, key=lambda pair: pair[0])]


def parse_scenario(text: str, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Parse scenario YAML text; raises ScenarioError, one line `SOURCE:LINE: field: message`
    per problem found (all of them, in file order)."""
    data, root, problems = _compose_and_construct(text, source)
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: (top level): a scenario must be a mapping of fields")
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems += _format_errors(error.errors(include_url=False), root, source)
    except RecursionError:
        problems.append(f"{source}:1: (top level): nested too deeply")
    if scenario is None or problems:
        raise ScenarioError("\n".join(sorted(problems, key=_line_number)))
    scenario._source, scenario._root = source, root
    prompt_file = scenario.workload.prompt.file
    if prompt_file is not None and base_dir is not None and not Path(prompt_file).is_absolute():
        scenario.workload.prompt.file = os.path.abspath(base_dir / prompt_file)
    problem = file_problem(scenario.workload.prompt.file)
    if problem is not None:
        line, _ = _line_for(root, ("workload", "prompt", "file"))
        raise ScenarioError(f"{source}:{line}: workload.prompt.file: {problem} {scenario.workload.prompt.file}")
    trace = scenario.load.trace
    if trace is not None:
        if base_dir is not None and not Path(trace.file).is_absolute():
            trace.file = os.path.abspath(base_dir / trace.file)
        problem = file_problem(trace.file)
        if problem is not None:
            line, _ = _line_for(root, ("load", "trace", "file"))
            raise ScenarioError(f"{source}:{line}: load.trace.file: {problem} {trace.file}")
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    from bench.inputs import MAX_SCENARIO_BYTES, read_input_text

    scenario_path = Path(path)
    text = read_input_text(scenario_path, MAX_SCENARIO_BYTES, ScenarioError, "scenario file")
    return parse_scenario(text, str(scenario_path), scenario_path.parent)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of the scenario file, for editors (yaml-language-server)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bench scenario"
    return schema


def file_problem(path: str | None) -> str | None:
    """Why `path` cannot be read as an input file (`no such file`, `cannot read (Too many levels
    of symbolic links)`, `not a regular file`), None when it can or when no file is named."""
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return "no such file" if error.errno == errno.ENOENT else f"cannot read ({error.strerror})"
    return None if stat.S_ISREG(mode) else "not a regular file"
