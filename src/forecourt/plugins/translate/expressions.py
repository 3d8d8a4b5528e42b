"""JMESPath expressions, compiled and checked once at config load.

The reference implementation (`jmespath`) parses; this module adds what a gateway config needs on
top: a one-line error message for a bad expression, a check at load time that every function an
expression calls exists and gets the right number of arguments (the library only finds out when it
runs), and Forecourt's coercion functions next to JMESPath's built-ins (`to_number`, `to_string`,
`not_null`, `join`, ...):

* `to_int(v)`, `to_bool(v)`, `to_date(v)`, `to_datetime(v)`: the coercions of `coercion.py`;
* `parse_date(v, 'FORMAT')`, `parse_datetime(v, 'FORMAT')`: the same from a `strptime` format.

Evaluation goes through one shared tree interpreter, so a request allocates nothing for it.
"""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath import exceptions, functions
from jmespath.parser import ParsedResult
from jmespath.visitor import Options, TreeInterpreter

from forecourt.plugins.translate.coercion import to_bool, to_date, to_datetime, to_int

__all__ = ["EvaluationError", "Expression", "compile_expression"]

EvaluationError = exceptions.JMESPathError
"""What evaluating an expression may raise (a function given a value of the wrong type)."""


class _Functions(functions.Functions):
    """JMESPath's built-in functions plus Forecourt's coercions."""

    @functions.signature({"types": []})
    def _func_to_int(self, value: Any) -> Any:
        return to_int(value)

    @functions.signature({"types": []})
    def _func_to_bool(self, value: Any) -> Any:
        return to_bool(value)

    @functions.signature({"types": []})
    def _func_to_date(self, value: Any) -> Any:
        return to_date(value)

    @functions.signature({"types": []})
    def _func_to_datetime(self, value: Any) -> Any:
        return to_datetime(value)

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_parse_date(self, value: Any, fmt: str) -> Any:
        return to_date(value, fmt)

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_parse_datetime(self, value: Any, fmt: str) -> Any:
        return to_datetime(value, fmt)


_FUNCTIONS = _Functions()
_INTERPRETER = TreeInterpreter(Options(custom_functions=_FUNCTIONS))


class Expression:
    """A compiled JMESPath expression; `search(document)` evaluates it."""

    __slots__ = ("_tree", "text")

    def __init__(self, parsed: ParsedResult) -> None:
        self.text = parsed.expression
        self._tree = parsed.parsed

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def search(self, document: Any) -> Any:
        """The expression's value for `document` (None when it selects nothing).

        Raises `EvaluationError` when a function gets a value of a type it does not take.
        """
        return _INTERPRETER.visit(self._tree, document)


def compile_expression(text: str) -> Expression:
    """Compile `text`, or raise ValueError with a one-line reason (config load)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a JMESPath expression, got an empty one")
    try:
        parsed = jmespath.compile(text)
    except exceptions.LexerError as exc:
        raise ValueError(
            f"invalid JMESPath expression {text!r}: {exc.message} at column {exc.lexer_position + 1}"
        ) from None
    except exceptions.IncompleteExpressionError:
        raise ValueError(f"invalid JMESPath expression {text!r}: incomplete expression") from None
    except exceptions.ParseError as exc:
        token = repr(exc.token_value) if exc.token_value else "end of expression"
        raise ValueError(
            f"invalid JMESPath expression {text!r}: unexpected {token} at column {exc.lex_position + 1}"
        ) from None
    except exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {text!r}: {exc}") from None
    _check_functions(text, parsed.parsed)
    return Expression(parsed)


def _check_functions(text: str, node: Any) -> None:
    """Unknown functions and wrong argument counts, found now rather than on a request."""
    if node.get("type") == "function_expression":
        name = node["value"]
        spec = _FUNCTIONS.FUNCTION_TABLE.get(name)
        if spec is None:
            raise ValueError(f"invalid JMESPath expression {text!r}: unknown function {name}()")
        signature = spec["signature"]
        given = len(node["children"])
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if given < len(signature) or (given > len(signature) and not variadic):
            expected = f"at least {len(signature)}" if variadic else str(len(signature))
            raise ValueError(
                f"invalid JMESPath expression {text!r}: {name}() takes {expected} argument(s), got {given}"
            )
    for child in node.get("children", ()):
        if isinstance(child, dict):
            _check_functions(text, child)
