"""Reading scenario YAML with line numbers: safe loading, alias-bomb and duplicate-key checks,
and the line of a field given its pydantic error location."""

from __future__ import annotations

import re
from typing import Any

import yaml

from bench.errors import ScenarioError
from bench.escape import plain_terminal
from bench.numbers import MAX_YAML_NODES
from bench.inputs.yaml12 import Yaml12Loader


class _LineLoader(Yaml12Loader):
    """SafeLoader (no arbitrary objects) reading YAML 1.2 numbers and booleans (bench.inputs.yaml12),
    that also exposes the composed node tree."""


def _compose_and_construct(text: str, source: str) -> tuple[Any, yaml.Node | None, list[str]]:
    """(data, root node, duplicate-key problems); ScenarioError for YAML that cannot be read."""
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        _refuse_alias_bombs(node, source)
        duplicates = _duplicate_keys(node, source)
        return loader.construct_document(node), node, duplicates
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "invalid YAML"
        raise ScenarioError(f"{source}:{line}: YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, max(0, error.position)) + 1
        raise ScenarioError(
            f"{source}:{line}: YAML syntax error: character #x{error.character:04x} is not allowed"
        ) from None
    except yaml.YAMLError as error:
        summary = str(error).replace("\n", " ")
        raise ScenarioError(f"{source}:1: YAML error: {summary}") from None
    except RecursionError:
        raise ScenarioError(f"{source}:1: YAML error: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse_alias_bombs(root: yaml.Node, source: str) -> None:
    """Aliases share nodes: count the document as expanded (memoised per node, so the count
    itself is linear in the file) and refuse a recursive alias or a "billion laughs"."""
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: a deep document must not hit Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            if expanded[key] > MAX_YAML_NODES:
                raise ScenarioError(
                    f"{source}:{node.start_mark.line + 1}: YAML aliases expand to more than "
                    f"{MAX_YAML_NODES} values (an alias bomb?)"
                )
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise ScenarioError(f"{source}:{node.start_mark.line + 1}: YAML alias refers to itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)


def _duplicate_keys(root: yaml.Node, source: str) -> list[str]:
    # yaml.safe_load keeps the last of two equal keys silently; a benchmark must not guess.
    # A node shared by aliases is checked once (its duplicates are the same wherever it is used).
    problems: list[str] = []
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                field_path = f"{path}.{key}" if path else key
                if key in seen:
                    problems.append(f"{source}:{key_node.start_mark.line + 1}: "
                                    f"{plain_terminal(field_path)}: duplicate key")
                seen.add(key)
                children.append((value_node, field_path))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        stack.extend(reversed(children))  # document order: a shared node is named where first written
    return problems


def _line_number(problem: str) -> int:
    match = re.search(r":(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _line_for(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int, list[str]]:
    """Follow a pydantic error location through the YAML nodes; return (line, readable path).

    Union branch names and list-wrapping indexes that have no node are skipped, so the line is
    that of the deepest node the location reaches.
    """
    if root is None:
        return 1, [str(part) for part in loc if isinstance(part, (str, int))]
    node = root
    line = node.start_mark.line + 1
    path: list[str] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if str(key_node.value) == part:
                    path.append(part)
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                if _is_field_name(part):
                    # A missing required field: report it at the mapping that lacks it.
                    path.append(part)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                path.append(f"[{part}]")
                node = node.value[part]
                line = node.start_mark.line + 1
    return line, path


def _is_field_name(part: str) -> bool:
    # pydantic's union-branch tags look like "list[int]" or "function-after[...]"; field names don't.
    return re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", part) is not None and part not in {
        "str", "int", "float", "bool", "dict", "list", "none", "literal",
    }
