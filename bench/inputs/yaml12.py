"""YAML read by the 1.2 core schema: the one dialect for every YAML file bench reads.

PyYAML implements YAML 1.1, whose implicit types surprise: `1:30` is the sexagesimal 90,
`010` the octal 8, `1_000` is 1000, `0b11` is 3, `yes`/`no`/`on`/`off` are booleans, yet `1e3`
is a string. YAML 1.2 (what every other current parser and the spec's own examples use) has
none of that: decimal, `0o` octal and `0x` hex integers, floats with or without a dot, and
only true/false. Anything else stays a string, which the field that reads it then accepts as a
name or refuses in one line ("'1:30' is not a number or a duration"). A leaf module (no bench
imports): the simulator's catalog reads the same dialect as the client's scenarios.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"  # 1.1 only: `2024-05-01` stays the text it is
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)  # "010" is ten, not eight


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader (no Python objects) with the YAML 1.2 core schema's booleans and numbers."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))
Yaml12Loader.add_implicit_resolver(_INT_TAG, _INT_RE, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+.0123456789"))
Yaml12Loader.add_constructor(_INT_TAG, _construct_int)


def load_yaml(text: str) -> Any:
    """One YAML document read by the 1.2 core schema (yaml.YAMLError on bad YAML, too deep included)."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        # PyYAML composes nested collections recursively: 100,000 `[` end in Python's stack.
        raise yaml.YAMLError("nested too deeply") from None
