"""Type coercions: the `types` section of a mapping and the `to_int`, `to_bool`, ... functions.

Legacy systems send numbers as strings, flags as "Y"/"N" and dates in every spelling; a coercion
reads any JSON value as one type and returns the typed value, or None when the value has no
sensible reading as that type (a configured default then applies). Nothing raises: a value the
coercion cannot read is missing, not an error.

| name | result | reads |
|---|---|---|
| `int` | integer | integers, integral floats (`7.0`), numeric strings (`" 7 "`, `"7.0"`) |
| `number` | integer or float | numbers and numeric strings (not NaN or infinities) |
| `string` | string | strings as they are; numbers and booleans as JSON text (`7`, `true`) |
| `bool` | boolean | booleans, numbers (0 is false), `true/false`, `yes/no`, `y/n`, `on/off`, `1/0`, `t/f` |
| `date` | `YYYY-MM-DD` | ISO 8601 dates and date-times (`20240131`, `2024-01-31T10:00Z`), Unix seconds |
| `datetime` | ISO 8601 | ISO 8601 date-times (UTC written `Z`), Unix seconds (as UTC) |
| `date:FORMAT`, `datetime:FORMAT` | as above | strings in a `strptime` FORMAT, e.g. `date:%d/%m/%Y` |

Booleans are never numbers here (JSON keeps them apart, and so does JMESPath's `to_number`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import orjson

__all__ = [
    "COERCION_NAMES",
    "Coercion",
    "named_coercion",
    "to_bool",
    "to_date",
    "to_datetime",
    "to_int",
    "to_number",
    "to_string",
]

Coercion = Callable[[Any], Any]

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    number = to_number(value)
    if isinstance(number, float):
        return int(number) if number.is_integer() else None
    return number


def to_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def to_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _moment(value: Any, fmt: str | None) -> datetime | date | None:
    """The point in time a value names (a `date` when it names only a day), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if fmt is not None:
            return datetime.strptime(text, fmt)
        try:
            return date.fromisoformat(text)
        except ValueError:
            return datetime.fromisoformat(text)
    except ValueError:
        return None


def to_date(value: Any, fmt: str | None = None) -> str | None:
    moment = _moment(value, fmt)
    if moment is None:
        return None
    return (moment.date() if isinstance(moment, datetime) else moment).isoformat()


def to_datetime(value: Any, fmt: str | None = None) -> str | None:
    moment = _moment(value, fmt)
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_BY_NAME: dict[str, Coercion] = {
    "int": to_int,
    "integer": to_int,
    "number": to_number,
    "string": to_string,
    "bool": to_bool,
    "boolean": to_bool,
    "date": to_date,
    "datetime": to_datetime,
}
COERCION_NAMES = "int, number, string, bool, date, datetime, date:FORMAT, datetime:FORMAT"


def named_coercion(name: str) -> Coercion:
    """The coercion a `types` entry names; ValueError naming the supported ones otherwise."""
    kind, colon, fmt = name.partition(":")
    if colon and kind in ("date", "datetime"):
        if not fmt:
            raise ValueError(f"{name!r} needs a strptime format after the colon, e.g. date:%d/%m/%Y")
        return partial(to_date if kind == "date" else to_datetime, fmt=fmt)
    found = _BY_NAME.get(name)
    if found is None:
        raise ValueError(f"unknown type {name!r} (supported: {COERCION_NAMES})")
    return found
