"""Error mapping: legacy error answers turned into RFC 9457 problem details.

An error rule matches a legacy answer by status (`404`, `"5xx"`; none given: any status from 400)
and, optionally, a JMESPath predicate `when` over the *error document*
`{"status": <legacy status>, "body": <legacy body>}` — the body parsed as JSON, or its text when it
is not JSON, or null when it is empty. A predicate is true by JMESPath's rules (not false, null, or
an empty string, list or object); one that fails to evaluate is false. The first matching rule
answers with `application/problem+json`:

    {"type": ..., "title": ..., "status": ..., "detail": ..., "instance": ..., <extensions>}

Each member is a text template: `$(body.err_msg)` and `$(status)` are JMESPath over the error
document, any other `$(...)` is a request template (`$(uri_captures.productId)`). An extension member
that is exactly one `$(body...)` placeholder keeps the JSON type of its value.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import AfterValidator, BeforeValidator, Field

from forecourt.pipeline import PluginConfig
from forecourt.plugins.templates import Template, TemplateError, closing_paren, compile_template
from forecourt.plugins.translate.expressions import EvaluationError, Expression, compile_expression
from forecourt.plugins.translate.mapping import ExpressionText

if TYPE_CHECKING:
    from forecourt.plugins.templates import TemplateSource

# Quotes inside `$(...)` in problem details: template strings plus JMESPath's backtick literals.
JMESPATH_QUOTES = "\"'`"

__all__ = [
    "JMESPATH_QUOTES",
    "PROBLEM_CONTENT_TYPE",
    "ErrorMapping",
    "ErrorRule",
    "ProblemSpec",
    "ProblemText",
    "StatusPatterns",
    "StatusSet",
    "error_document",
    "problem_body",
    "truthy",
]

PROBLEM_CONTENT_TYPE = b"application/problem+json"
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})
_ERROR_DOCUMENT_NAMES = frozenset({"body", "status"})
_FIRST_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")
_STATUS_CLASS = re.compile(r"^[1-5]xx$")


# ---------------------------------------------------------------------- text templates
class ProblemText:
    """A template mixing error-document placeholders (JMESPath) and request placeholders."""

    __slots__ = ("parts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts = _parse(text)

    def render(self, document: Any, source: TemplateSource | None) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Template):
                out.append(part.render(source))
            else:
                out.append(_text(_search(part, document)))
        return "".join(out)

    def value(self, document: Any, source: TemplateSource | None) -> Any:
        """The JSON value of a lone `$(body...)` placeholder, else the rendered text."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return _search(self.parts[0], document)
        return self.render(document, source)


def _parse(text: str) -> tuple[str | Template | Expression, ...]:
    parts: list[str | Template | Expression] = []
    i = 0
    while True:
        start = text.find("$(", i)
        if start < 0:
            if text[i:]:
                parts.append(text[i:])
            return tuple(parts)
        if start > i:
            parts.append(text[i:start])
        end = closing_paren(text, start + 2, JMESPATH_QUOTES)
        if end < 0:
            raise ValueError(f"unterminated template placeholder in {text!r}")
        inner = text[start + 2 : end]
        first = _FIRST_NAME.match(inner)
        if first is not None and first.group(1) in _ERROR_DOCUMENT_NAMES:
            parts.append(compile_expression(inner))
        else:
            try:
                parts.append(compile_template(f"$({inner})"))
            except TemplateError as exc:
                raise ValueError(f"{exc} (or body.<expression>, status)") from None
        i = end + 1


def _search(expression: Expression, document: Any) -> Any:
    try:
        return expression.search(document)
    except EvaluationError:
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; everything else is true."""
    return not (value is None or value is False or value in ("", [], {}))


def error_document(status: int, raw: bytes) -> dict[str, Any]:
    """`{"status", "body"}` for predicates and templates: body as JSON, else text, else null."""
    body: Any = None
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
    return {"status": status, "body": body}


# ---------------------------------------------------------------------- config
def _check_text(value: str) -> str:
    ProblemText(value)
    return value


def _check_extension_name(name: str) -> str:
    if name in _STANDARD_MEMBERS:
        raise ValueError(f"{name!r} is a standard member; set it outside extensions")
    return name


def _status_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _check_status_pattern(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected a status (404) or a status class ('5xx')")
    if isinstance(value, int):
        if not 100 <= value <= 599:
            raise ValueError(f"{value} is not an HTTP status (100-599)")
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return _check_status_pattern(int(text))
        if _STATUS_CLASS.match(text):
            return text
    raise ValueError(f"expected a status (404) or a status class ('5xx'), got {value!r}")


TextTemplate = Annotated[str, AfterValidator(_check_text)]
ExtensionName = Annotated[str, AfterValidator(_check_extension_name)]
StatusPattern = Annotated[int | str, BeforeValidator(_check_status_pattern)]
StatusPatterns = Annotated[list[StatusPattern], BeforeValidator(_status_list)]


class ProblemSpec(PluginConfig):
    """The problem details a matching rule answers with (RFC 9457)."""

    status: int | None = Field(
        None, ge=100, le=599, description="The clean status; default: the legacy status."
    )
    type: TextTemplate = Field("about:blank", description="A URI naming the problem type (template).")
    title: TextTemplate | None = Field(
        None, description="A short summary (template); default: the status's reason phrase."
    )
    detail: TextTemplate | None = Field(None, description="An explanation of this occurrence (template).")
    instance: TextTemplate | None = Field(None, description="A URI naming this occurrence (template).")
    extensions: dict[ExtensionName, TextTemplate] = Field(
        default_factory=dict, description="More members (templates); a lone $(body...) keeps its type."
    )


class ErrorRule(PluginConfig):
    """One legacy error answer and the problem it becomes."""

    status: StatusPatterns = Field(
        default_factory=list, description="Legacy statuses (404, '5xx'); none: any status from 400."
    )
    when: ExpressionText | None = Field(
        None, description="JMESPath predicate over {status, body} of the legacy answer."
    )
    problem: ProblemSpec = Field(default_factory=ProblemSpec)


# ---------------------------------------------------------------------- runtime
class StatusSet:
    """Statuses given as numbers and classes (`5xx`); empty matches `default` (a predicate)."""

    __slots__ = ("classes", "statuses")

    def __init__(self, patterns: list[int | str]) -> None:
        self.statuses = frozenset(p for p in patterns if isinstance(p, int))
        self.classes = frozenset(int(p[0]) for p in patterns if isinstance(p, str))

    def __bool__(self) -> bool:
        return bool(self.statuses or self.classes)

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and (status in self.statuses or status // 100 in self.classes)


class ErrorMapping:
    """A compiled error rule."""

    __slots__ = ("detail", "extensions", "instance", "predicate", "status", "statuses", "title", "type")

    def __init__(self, rule: ErrorRule) -> None:
        self.statuses = StatusSet(list(rule.status))
        self.predicate: Expression | None = compile_expression(rule.when) if rule.when is not None else None
        problem = rule.problem
        self.status = problem.status
        self.type = ProblemText(problem.type)
        self.title = ProblemText(problem.title) if problem.title is not None else None
        self.detail = ProblemText(problem.detail) if problem.detail is not None else None
        self.instance = ProblemText(problem.instance) if problem.instance is not None else None
        self.extensions = tuple((name, ProblemText(text)) for name, text in problem.extensions.items())

    def applies_to(self, status: int) -> bool:
        """Whether a legacy answer with `status` may match (its body decides the rest)."""
        return status in self.statuses if self.statuses else status >= 400

    def matches(self, document: dict[str, Any]) -> bool:
        return self.predicate is None or truthy(_search(self.predicate, document))

    def problem(self, document: dict[str, Any], source: TemplateSource | None) -> tuple[int, dict[str, Any]]:
        """The clean status and the problem details document."""
        status = self.status if self.status is not None else int(document["status"])
        title = self.title.render(document, source) if self.title is not None else _phrase(status)
        out: dict[str, Any] = {"type": self.type.render(document, source), "title": title, "status": status}
        if self.detail is not None:
            out["detail"] = self.detail.render(document, source)
        if self.instance is not None:
            out["instance"] = self.instance.render(document, source)
        for name, text in self.extensions:
            out[name] = text.value(document, source)
        return status, out


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, title: str, detail: str | None = None, **members: Any) -> bytes:
    """A problem details document (`type` about:blank) as bytes, for answers made by translate."""
    out: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        out["detail"] = detail
    out.update(members)
    return orjson.dumps(out)
