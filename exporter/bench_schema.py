"""The benchmark results schema (`schemas/bench_result.schema.json`) and a validator for it.

The schema is standard JSON Schema (draft 2020-12), so any validator can check files produced elsewhere
(e.g. by the Android app). edgeasr validates with the small checker below instead of adding a dependency:
it implements exactly the keywords the schema uses and refuses a schema with any other keyword, so a
schema change can never be silently half-checked.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from exporter.io import read_json
from runtimes.errors import EdgeAsrError

SCHEMA_VERSION = 1
SCHEMA_FILE = "schemas/bench_result.schema.json"
_ANNOTATIONS = {"$schema", "$id", "title", "description", "$comment", "$defs"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load_schema() -> dict:
    return json.loads(resources.files("exporter").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


class _Validator:
    def __init__(self, root: dict):
        self.root = root
        self.errors: list[str] = []

    def _resolve(self, ref: str) -> dict:
        if not ref.startswith("#/"):
            raise EdgeAsrError(f"schema reference {ref!r} is not local; the validator resolves '#/...' only")
        node = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def check(self, value, schema: dict, path: str) -> None:
        unknown = set(schema) - _ANNOTATIONS - set(_KEYWORDS)
        if unknown:
            raise EdgeAsrError(f"the schema uses keywords this validator does not implement: {sorted(unknown)}")
        for keyword, argument in schema.items():
            if keyword in _KEYWORDS:
                _KEYWORDS[keyword](self, value, argument, schema, path)

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '$'}: {message}")


def _ref(v: _Validator, value, ref, schema, path):
    v.check(value, v._resolve(ref), path)


def _type(v: _Validator, value, types, schema, path):
    names = [types] if isinstance(types, str) else types
    if not any(_TYPES[name](value) for name in names):
        v.fail(path, f"expected {' or '.join(names)}, got {type(value).__name__} {value!r:.60}")


def _const(v: _Validator, value, expected, schema, path):
    if value != expected or type(value) is not type(expected):
        v.fail(path, f"must be {expected!r}, got {value!r:.60}")


def _enum(v: _Validator, value, choices, schema, path):
    if value not in choices:
        v.fail(path, f"must be one of {choices}, got {value!r:.60}")


def _pattern(v: _Validator, value, pattern, schema, path):
    if isinstance(value, str) and re.search(pattern, value) is None:
        v.fail(path, f"{value!r:.60} does not match {pattern}")


def _min_length(v: _Validator, value, minimum, schema, path):
    if isinstance(value, str) and len(value) < minimum:
        v.fail(path, f"must have at least {minimum} characters")


def _minimum(v: _Validator, value, minimum, schema, path):
    if _TYPES["number"](value) and value < minimum:
        v.fail(path, f"must be >= {minimum}, got {value}")


def _required(v: _Validator, value, names, schema, path):
    if isinstance(value, dict):
        for name in names:
            if name not in value:
                v.fail(path, f"missing required property {name!r}")


def _properties(v: _Validator, value, properties, schema, path):
    if isinstance(value, dict):
        for name, sub in properties.items():
            if name in value:
                v.check(value[name], sub, f"{path}.{name}")


def _additional(v: _Validator, value, allowed, schema, path):
    if isinstance(value, dict) and allowed is False:
        for name in sorted(set(value) - set(schema.get("properties", {}))):
            v.fail(path, f"unexpected property {name!r}")


def _items(v: _Validator, value, sub, schema, path):
    if isinstance(value, list):
        for index, item in enumerate(value):
            v.check(item, sub, f"{path}[{index}]")


_KEYWORDS = {
    "$ref": _ref,
    "type": _type,
    "const": _const,
    "enum": _enum,
    "pattern": _pattern,
    "minLength": _min_length,
    "minimum": _minimum,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
}


def schema_errors(data, schema: dict | None = None, max_errors: int = 20) -> list[str]:
    """Every violation of the results schema in `data` (an empty list when it is valid)."""
    validator = _Validator(schema or load_schema())
    validator.check(data, validator.root, "")
    return validator.errors[:max_errors]


def validate_results(data, source: str = "results") -> None:
    """Raise EdgeAsrError naming the first violations when `data` does not follow the schema."""
    errors = schema_errors(data)
    if errors:
        shown = "; ".join(errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise EdgeAsrError(f"{source} does not follow the bench result schema v{SCHEMA_VERSION}: {shown}{more}")


def load_results(path: Path) -> dict:
    """A results file, validated."""
    data = read_json(path, "an edgeasr bench results file", "write one with `edgeasr bench --json`")
    validate_results(data, str(path))
    return data


__all__ = ["SCHEMA_VERSION", "load_results", "load_schema", "schema_errors", "validate_results"]
