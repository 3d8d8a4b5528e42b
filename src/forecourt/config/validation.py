"""Run pydantic validation and turn its errors into `ConfigIssue`s at the right key path.

Pydantic's `loc` is already a key path relative to the validated value, so an error in
`services[0]` at loc `("routes", 1)` lands on `services[0].routes[1]`. Messages are rewritten into
the short, Kong-like wording users see from `forecourt check`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from forecourt.config.errors import ConfigIssue, KeyPath
from forecourt.config.source import ConfigSource

ModelT = TypeVar("ModelT", bound=BaseModel)

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
}


class IssueLog:
    """Collects the issues of one load, each placed by the document's line map."""

    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.issues: list[ConfigIssue] = []

    def add(self, path: KeyPath, message: str) -> None:
        self.issues.append(self.source.issue(path, message))

    def extend(self, issues: list[ConfigIssue]) -> None:
        self.issues.extend(issues)

    def validate(self, model: type[ModelT], data: object, path: KeyPath) -> ModelT | None:
        """`model` validated from `data`, or None after logging every error under `path`."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.add_validation_errors(exc, path)
            return None

    def validate_partial(
        self, model: type[ModelT], data: object, path: KeyPath
    ) -> tuple[ModelT | None, bool]:
        """Like `validate`, but on failure also try again without the offending fields.

        The partial model lets reference checks still run for an entity with, say, one bad path,
        so the user sees a dangling reference in the same run. Returns `(model, fully_valid)`.
        """
        try:
            return model.model_validate(data), True
        except ValidationError as exc:
            self.add_validation_errors(exc, path)
            if not isinstance(data, dict):
                return None, False
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
            try:
                return model.model_validate({k: v for k, v in data.items() if k not in bad}), False
            except ValidationError:
                return None, False

    def add_validation_errors(self, exc: ValidationError, path: KeyPath) -> None:
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if part != "[key]")
            self.add((*path, *loc), describe_error(error))


def describe_error(error: ErrorDetails) -> str:
    """A short message for one pydantic error, in the wording of Kong's schema errors."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        return f'unknown field "{error["loc"][-1]}"'
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {_show(error['input'])}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_show(error['input'])}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty" if ctx.get("min_length") == 1 else str(error["msg"])
    return str(error["msg"])


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)
