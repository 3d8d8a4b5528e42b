"""The node walk: line numbers, duplicate keys, YAML quirks and syntax errors."""

from __future__ import annotations

import pytest

from forecourt.config import ConfigError
from forecourt.config.yaml_source import read_document

DOC = """\
services:
- name: a
  routes:
  - paths:
    - /x
    - /y
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("services",), 1),
        (("services", 0), 2),
        (("services", 0, "name"), 2),
        (("services", 0, "routes", 0, "paths"), 4),
        (("services", 0, "routes", 0, "paths", 1), 6),
        # unknown paths fall back to the nearest enclosing node
        (("services", 0, "routes", 0, "hosts"), 4),
        (("services", 0, "missing", 3), 2),
    ],
)
def test_line_of(path: tuple[str | int, ...], line: int) -> None:
    document = read_document(DOC, "gw.yaml")
    assert document.source.line_of(path) == line


def test_data_is_plain_python() -> None:
    document = read_document(DOC, "gw.yaml")
    assert document.data == {"services": [{"name": "a", "routes": [{"paths": ["/x", "/y"]}]}]}


def test_duplicate_key_is_reported_at_the_second() -> None:
    document = read_document("a: 1\nb: 2\na: 3\n", "gw.yaml")
    assert [str(issue) for issue in document.issues] == ['gw.yaml:3: a: duplicate key "a"']


def test_keys_are_text_as_written() -> None:
    document = read_document("on: 1\n200: x\n", "gw.yaml")
    assert document.data == {"on": 1, "200": "x"}


def test_merge_keys_and_override() -> None:
    text = "base: &b\n  retries: 1\n  port: 80\nsvc:\n  <<: *b\n  port: 81\n"
    document = read_document(text, "gw.yaml")
    assert isinstance(document.data, dict)
    assert document.data["svc"] == {"retries": 1, "port": 81}
    assert document.source.line_of(("svc", "port")) == 6
    assert document.issues == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n- name: a\n  host: [\n", "gw.yaml:4: invalid YAML"),
        ("a: 1\n b: 2\n", "gw.yaml:2: invalid YAML: mapping values are not allowed here"),
        ("", "gw.yaml:1: file is empty"),
        ("# only a comment\n", "gw.yaml:1: file is empty"),
        ("- a\n- b\n", "gw.yaml:1: top level must be a mapping, not a list"),
        ("just text\n", "gw.yaml:1: top level must be a mapping, not a str"),
    ],
)
def test_fatal_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_document(text, "gw.yaml")
    assert len(caught.value.issues) == 1
    assert str(caught.value).startswith(expected)


def test_json_tabs_and_numbers() -> None:
    text = '{\n\t"a": 1e3,\n\t"b": "x\\/y",\n\t"c": 2.5\n}\n'
    document = read_document(text, "gw.json")
    assert document.data == {"a": 1000, "b": "x/y", "c": 2.5}
    assert document.source.line_of(("c",)) == 4
