"""The `translate` plugin's config schema (Kong style: every field typed, defaulted, described).

    request:   how a clean request becomes the legacy one: method, path (a template that may
               carry a query), query (rename/set/remove), headers (rename/set/remove), body (a
               mapping of the clean JSON body), types, defaults, drop_nulls
    response:  how a legacy answer becomes the clean one: body (a mapping of the legacy JSON body)
               for `statuses`, types, defaults, drop_nulls, headers (rename/set/remove),
               content_type, on_invalid, max_body_size
    errors:    legacy error answers → problem details (`problem.py`), first match wins

Everything is checked when the config loads; a problem is reported at its own key path
(`plugins[0].config.response.body.availableQuantity: invalid JMESPath expression ...`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from forecourt.pipeline import PluginConfig
from forecourt.plugins.request_transformer import (
    UNSETTABLE_REQUEST_HEADERS,
    check_header_name,
    check_template,
)
from forecourt.plugins.templates import closing_paren
from forecourt.plugins.translate.mapping import MappingSpec, TypeName, check_paths
from forecourt.plugins.translate.problem import JMESPATH_QUOTES, ErrorRule, StatusPatterns

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "QueryRules",
    "RequestHeaderRules",
    "RequestRules",
    "ResponseHeaderRules",
    "ResponseRules",
    "TranslateConfig",
    "split_outside_placeholders",
]

DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
# Response headers the proxy frames the body with while it relays it.
_FRAMING_RESPONSE_HEADERS = frozenset({"transfer-encoding", "connection", "content-length"})
_METHOD = re.compile(r"^[A-Z]+$")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.*)?$")


def split_outside_placeholders(text: str, separator: str) -> list[str]:
    """`text` split at `separator` where it is not inside a `$(...)` placeholder."""
    pieces: list[str] = []
    start = i = 0
    while i < len(text):
        if text.startswith("$(", i):
            end = closing_paren(text, i + 2, JMESPATH_QUOTES)
            i = len(text) if end < 0 else end + 1
            continue
        if text.startswith(separator, i):
            pieces.append(text[start:i])
            i += len(separator)
            start = i
            continue
        i += 1
    pieces.append(text[start:])
    return pieces


# ---------------------------------------------------------------------- field types
def _header(name: str) -> str:
    check_header_name(name)
    return name


def _request_header_target(name: str) -> str:
    check_header_name(name)
    if name.lower() in UNSETTABLE_REQUEST_HEADERS:
        raise ValueError(f"'{name}' is set by the proxy itself and cannot be set by translate")
    return name


def _response_header_target(name: str) -> str:
    check_header_name(name)
    if name.lower() in _FRAMING_RESPONSE_HEADERS:
        raise ValueError(f"'{name}' frames the response and cannot be set by translate")
    return name


def _template(value: str) -> str:
    check_template(value)
    return value


HeaderName = Annotated[str, AfterValidator(_header)]
RequestHeaderTarget = Annotated[str, AfterValidator(_request_header_target)]
ResponseHeaderTarget = Annotated[str, AfterValidator(_response_header_target)]
TemplateText = Annotated[str, AfterValidator(_template)]


# ---------------------------------------------------------------------- sections
class RequestHeaderRules(PluginConfig):
    rename: dict[HeaderName, RequestHeaderTarget] = Field(
        default_factory=dict, description="Clean header name → legacy header name."
    )
    set: dict[RequestHeaderTarget, TemplateText] = Field(
        default_factory=dict, description="Headers to set (replacing any), values are templates."
    )
    remove: list[HeaderName] = Field(
        default_factory=list, description="Headers the legacy side must not see."
    )


class ResponseHeaderRules(PluginConfig):
    rename: dict[HeaderName, ResponseHeaderTarget] = Field(
        default_factory=dict, description="Legacy header name → clean header name."
    )
    set: dict[ResponseHeaderTarget, TemplateText] = Field(
        default_factory=dict, description="Headers to set (replacing any), values are templates."
    )
    remove: list[HeaderName] = Field(default_factory=list, description="Legacy headers to drop.")


class QueryRules(PluginConfig):
    rename: dict[str, str] = Field(default_factory=dict, description="Clean argument name → legacy name.")
    set: dict[str, TemplateText] = Field(
        default_factory=dict, description="Legacy arguments to set (replacing any), values are templates."
    )
    remove: list[str] = Field(default_factory=list, description="Clean arguments to drop.")
    forward_unmapped: bool = Field(
        True, description="Forward client arguments that no rule names (false: only mapped ones)."
    )


class BodyRules(PluginConfig):
    """A body mapping with its coercions and defaults (`mapping.py`)."""

    body: MappingSpec = Field(None, description="The output document, as a mapping; null: unchanged.")
    types: dict[str, TypeName] = Field(default_factory=dict, description="Output path → coercion.")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Output path → value used when the mapped value is null."
    )
    drop_nulls: bool = Field(False, description="Leave fields whose value is null out of their object.")

    @model_validator(mode="after")
    def _paths(self) -> BodyRules:
        check_paths(self.body, self.types, self.defaults)
        return self


class RequestRules(BodyRules):
    method: str | None = Field(None, description="The legacy method, e.g. POST.")
    path: str | None = Field(
        None, description="The legacy path, a template; may carry a query: /inventory?sku=$(uri_captures.id)"
    )
    query: QueryRules = Field(default_factory=QueryRules)
    headers: RequestHeaderRules = Field(default_factory=RequestHeaderRules)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is not None and not _METHOD.match(value):
            raise ValueError(f"invalid value: {value} (an HTTP method in upper case, e.g. POST)")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        path, *query = split_outside_placeholders(value, "?")
        check_template(path)
        for argument in split_outside_placeholders("?".join(query), "&") if query else ():
            name, _, text = argument.partition("=")
            if not name:
                raise ValueError(f"{argument!r} in the query of {value!r} has no name")
            check_template(text)
        return value


def _success_statuses() -> list[int | str]:
    return ["2xx"]


class ResponseRules(BodyRules):
    statuses: StatusPatterns = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Legacy statuses whose body `body` maps.",
    )
    content_type: str = Field("application/json", description="Content-Type of mapped bodies.")
    headers: ResponseHeaderRules = Field(default_factory=ResponseHeaderRules)
    on_invalid: Literal["problem", "pass"] = Field(
        "problem",
        description="A body that cannot be mapped (not JSON, an expression failed): 502 problem, or pass.",
    )
    max_body_size: int = Field(
        DEFAULT_MAX_BODY_SIZE, ge=1, description="Largest legacy body buffered for translation (bytes)."
    )

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        if not _MEDIA_TYPE.match(value):
            raise ValueError(f"{value!r} is not a media type")
        return value


class TranslateConfig(PluginConfig):
    request: RequestRules = Field(default_factory=RequestRules)
    response: ResponseRules = Field(default_factory=ResponseRules)
    errors: list[ErrorRule] = Field(
        default_factory=list, description="Legacy error answers → problem details; first match wins."
    )
