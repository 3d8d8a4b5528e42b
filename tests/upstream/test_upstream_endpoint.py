"""Endpoint identity and formatting."""

from __future__ import annotations

import pytest

from forecourt.upstream import Endpoint


def test_key_is_address_and_label_is_configured_name() -> None:
    e = Endpoint("orders.test", "127.0.0.9", 8080, 50)
    assert (e.key, e.label, e.active, e.healthy) == ("127.0.0.9:8080", "orders.test:8080", 0, True)


def test_ipv6_addresses_are_bracketed() -> None:
    e = Endpoint("::1", "::1", 443)
    assert e.key == e.label == "[::1]:443"


def test_equality_and_hash_follow_the_key() -> None:
    a = Endpoint("a.test", "127.0.0.1", 80)
    b = Endpoint("b.test", "127.0.0.1", 80, weight=5)
    assert a == b and hash(a) == hash(b) and b in {a}
    assert a != Endpoint("a.test", "127.0.0.1", 81)


@pytest.mark.parametrize(("weight", "port"), [(-1, 80), (1, 0), (1, 70000)])
def test_invalid_values_are_rejected(weight: int, port: int) -> None:
    with pytest.raises(ValueError):
        Endpoint("a.test", "127.0.0.1", port, weight)


def test_endpoint_has_no_instance_dict() -> None:
    with pytest.raises(AttributeError):
        Endpoint("a.test", "127.0.0.1", 80).extra = 1  # type: ignore[attr-defined]
