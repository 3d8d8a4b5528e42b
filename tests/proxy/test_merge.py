"""Shaping backend answers (`allow`, `deny`, `mapping`) and merging them (`group`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from forecourt.proxy.merge import ResultShaper, compile_paths, merge_result

USER: dict[str, Any] = {
    "id": 7,
    "name": "Ada",
    "password_hash": "x",
    "profile": {"email": "ada@example.com", "address": {"city": "London", "zip": "N1"}},
    "orders": [{"id": 1, "total": 10, "internal": True}, {"id": 2, "total": 20, "internal": False}],
}


def test_compile_paths_builds_a_tree_and_a_shorter_path_wins() -> None:
    assert compile_paths(["a.b", "a.c", "d"]) == {"a": {"b": None, "c": None}, "d": None}
    assert compile_paths(["a", "a.b"]) == {"a": None}
    assert compile_paths(["a.b", "a"]) == {"a": None}


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        (["id", "name"], {"id": 7, "name": "Ada"}),
        (["profile.address.city"], {"profile": {"address": {"city": "London"}}}),
        (["id", "missing"], {"id": 7}),
        (["orders.id"], {"orders": [{"id": 1}, {"id": 2}]}),
        (["profile"], {"profile": USER["profile"]}),
    ],
)
def test_allow_keeps_only_the_listed_fields(allow: list[str], expected: dict[str, Any]) -> None:
    assert ResultShaper(allow=allow).apply(USER) == expected


@pytest.mark.parametrize(
    ("deny", "removed"),
    [
        (["password_hash"], lambda d: d.pop("password_hash")),
        (["profile.address.zip"], lambda d: d["profile"]["address"].pop("zip")),
        (["orders.internal"], lambda d: [o.pop("internal") for o in d["orders"]]),
        (["nope.nothing"], lambda d: None),
    ],
)
def test_deny_drops_the_listed_fields(deny: list[str], removed: Any) -> None:
    expected = copy.deepcopy(USER)
    removed(expected)
    assert ResultShaper(deny=deny).apply(USER) == expected


def test_shaping_never_changes_its_input() -> None:
    before = copy.deepcopy(USER)
    ResultShaper(deny=["profile.address.zip"], mapping={"profile.email": "email", "id": "user_id"}).apply(
        USER
    )
    ResultShaper(allow=["orders.id"]).apply(USER)
    assert before == USER


def test_mapping_renames_in_place_and_lifts_nested_fields() -> None:
    shaped = ResultShaper(
        allow=["id", "name", "profile.email"], mapping={"id": "user_id", "profile.email": "email"}
    )
    assert shaped.apply(USER) == {"user_id": 7, "name": "Ada", "profile": {}, "email": "ada@example.com"}
    assert list(shaped.apply(USER)) == ["user_id", "name", "profile", "email"]


def test_a_list_answer_is_shaped_element_by_element() -> None:
    shaper = ResultShaper(allow=["id"], mapping={"id": "order"})
    assert shaper.apply(USER["orders"]) == [{"order": 1}, {"order": 2}]
    assert shaper.apply([1, "two", {"id": 3, "x": 0}]) == [1, "two", {"order": 3}]


@pytest.mark.parametrize("value", ["text", 3, None, True])
def test_values_that_are_not_objects_pass_unchanged(value: Any) -> None:
    assert ResultShaper(allow=["a"], deny=[], mapping={"a": "b"}).apply(value) == value


def test_an_empty_shaper_is_the_identity() -> None:
    shaper = ResultShaper()
    assert shaper.identity
    assert shaper.apply(USER) is USER


def test_results_sharing_a_group_merge_and_the_later_wins() -> None:
    response: dict[str, Any] = {}
    first = {"name": "Ada", "city": "London"}
    merge_result(response, "user", first)
    merge_result(response, "user", {"city": "Paris", "orders": 2})
    merge_result(response, "recs", [1, 2])
    assert response == {"user": {"name": "Ada", "city": "Paris", "orders": 2}, "recs": [1, 2]}
    assert first == {"name": "Ada", "city": "London"}  # a cached answer is never merged into


def test_a_non_object_replaces_what_was_at_its_key() -> None:
    response: dict[str, Any] = {"x": {"a": 1}}
    merge_result(response, "x", [1])
    assert response == {"x": [1]}
