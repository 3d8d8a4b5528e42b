"""Behaviour of each balancing algorithm, driven through the public Balancer protocol."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter

import pytest

from forecourt.upstream import (
    Balancer,
    ConsistentHashingBalancer,
    Endpoint,
    LatencyBalancer,
    UnknownAlgorithmError,
    algorithms,
    make_balancer,
    register_balancer,
)
from forecourt.upstream.balancers import RoundRobinBalancer

ALGORITHMS = ["round-robin", "least-connections", "consistent-hashing", "latency"]


def ep(n: int, weight: int = 100, port: int = 8080) -> Endpoint:
    return Endpoint(f"host{n}.test", f"127.0.0.{n}", port, weight)


def pick(balancer: Balancer, hash_key: str | None = None) -> Endpoint:
    chosen = balancer.pick(hash_key)
    assert chosen is not None
    return chosen


def longest_run(labels: list[str]) -> int:
    return max(len(list(group)) for _, group in itertools.groupby(labels))


# --- common to every algorithm ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_registry_builds_a_balancer(algorithm: str) -> None:
    balancer = make_balancer(algorithm, [ep(1)])
    assert isinstance(balancer, Balancer)
    assert algorithm in algorithms()
    assert pick(balancer, "k").key == "127.0.0.1:8080"


def test_unknown_algorithm_names_the_known_ones() -> None:
    with pytest.raises(UnknownAlgorithmError, match=r"'fastest'.*round-robin"):
        make_balancer("fastest", [ep(1)])


def test_register_balancer_adds_an_algorithm() -> None:
    register_balancer("test-first", lambda endpoints, _slots: RoundRobinBalancer(endpoints))
    assert "test-first" in algorithms()
    assert pick(make_balancer("test-first", [ep(1)])).ip == "127.0.0.1"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("hash_key", [None, "user-7"])
def test_empty_pool_picks_nothing(algorithm: str, hash_key: str | None) -> None:
    assert make_balancer(algorithm, []).pick(hash_key) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("hash_key", [None, "user-7"])
def test_unhealthy_and_zero_weight_endpoints_are_never_picked(algorithm: str, hash_key: str | None) -> None:
    sick, idle, good = ep(1), ep(2, weight=0), ep(3)
    sick.healthy = False
    balancer = make_balancer(algorithm, [sick, idle, good])
    assert {pick(balancer, hash_key).ip for _ in range(50)} == {"127.0.0.3"}
    good.healthy = False
    assert balancer.pick(hash_key) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("hash_key", [None, "user-7"])
def test_exclude_sends_a_retry_elsewhere(algorithm: str, hash_key: str | None) -> None:
    endpoints = [ep(1), ep(2), ep(3)]
    balancer = make_balancer(algorithm, endpoints)
    first = pick(balancer, hash_key)
    # A new object with the same key is excluded too: exclusion is by address, not identity.
    retry = balancer.pick(hash_key, exclude=frozenset({Endpoint("x", first.ip, first.port)}))
    assert retry is not None and retry.key != first.key
    third = balancer.pick(hash_key, exclude=[first, retry])
    assert third is not None and third.key not in {first.key, retry.key}
    assert balancer.pick(hash_key, exclude=endpoints) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_set_endpoints_reuses_objects_and_keeps_in_flight_counts(algorithm: str) -> None:
    a, b = ep(1), ep(2)
    balancer = make_balancer(algorithm, [a, b])
    balancer.acquire(a)
    balancer.acquire(a)
    balancer.set_endpoints([ep(1, weight=300), ep(2), ep(4)])
    assert [e.key for e in balancer.endpoints] == ["127.0.0.1:8080", "127.0.0.2:8080", "127.0.0.4:8080"]
    assert balancer.endpoints[0] is a and a.active == 2 and a.weight == 300
    balancer.release(a)
    balancer.release(a)
    balancer.release(a)  # one too many (e.g. a request that straddled a removal) stays at zero
    assert a.active == 0


# --- round-robin ----------------------------------------------------------------------------------


def test_round_robin_follows_weights_within_five_percent() -> None:
    balancer = make_balancer("round-robin", [ep(1, 100), ep(2, 50), ep(3, 25)])
    counts = Counter(pick(balancer).ip for _ in range(1000))
    total = 175
    for ip, weight in [("127.0.0.1", 100), ("127.0.0.2", 50), ("127.0.0.3", 25)]:
        assert abs(counts[ip] / 1000 - weight / total) < 0.05, counts


def test_round_robin_is_smooth_not_bursty() -> None:
    balancer = make_balancer("round-robin", [ep(1, 5), ep(2, 1), ep(3, 1)])
    # nginx's documented sequence for weights 5/1/1: a a b a c a a, repeating.
    assert "".join(pick(balancer).ip[-1] for _ in range(14)) == "1121311" * 2
    balancer = make_balancer("round-robin", [ep(1, 100), ep(2, 50), ep(3, 25)])
    labels = [pick(balancer).ip for _ in range(1000)]
    assert longest_run(labels) <= 2
    # Every window of one full cycle (7 picks for 4:2:1) holds each endpoint in proportion.
    for start in range(0, 700, 7):
        assert Counter(labels[start : start + 7]) == {"127.0.0.1": 4, "127.0.0.2": 2, "127.0.0.3": 1}


def test_round_robin_keeps_its_position_across_set_endpoints() -> None:
    balancer = make_balancer("round-robin", [ep(1), ep(2), ep(3)])
    assert [pick(balancer).ip for _ in range(2)] == ["127.0.0.1", "127.0.0.2"]
    # Fresh objects with the same keys (a DNS refresh): the rotation continues where it was.
    balancer.set_endpoints([ep(1), ep(2), ep(3)])
    assert [pick(balancer).ip for _ in range(4)] == ["127.0.0.3", "127.0.0.1", "127.0.0.2", "127.0.0.3"]


def test_round_robin_weight_zero_everywhere_picks_nothing() -> None:
    assert make_balancer("round-robin", [ep(1, 0), ep(2, 0)]).pick() is None


# --- least-connections ----------------------------------------------------------------------------


def test_least_connections_prefers_the_idle_endpoint() -> None:
    busy, idle = ep(1), ep(2)
    balancer = make_balancer("least-connections", [busy, idle])
    for _ in range(3):
        balancer.acquire(busy)
    assert [pick(balancer).ip for _ in range(3)] == ["127.0.0.2"] * 3
    balancer.acquire(idle)
    balancer.acquire(idle)
    balancer.acquire(idle)
    balancer.acquire(idle)
    assert pick(balancer).ip == "127.0.0.1"


def test_least_connections_spreads_an_idle_pool_round_robin() -> None:
    balancer = make_balancer("least-connections", [ep(1), ep(2), ep(3)])
    assert [pick(balancer).ip[-1] for _ in range(6)] == list("123123")


def test_least_connections_counts_relative_to_weight() -> None:
    heavy, light = ep(1, 300), ep(2, 100)
    balancer = make_balancer("least-connections", [heavy, light])
    chosen = []
    for _ in range(8):  # requests that stay in flight
        e = pick(balancer)
        balancer.acquire(e)
        chosen.append(e.ip)
    assert Counter(chosen) == {"127.0.0.1": 6, "127.0.0.2": 2}


def test_least_connections_counts_survive_set_endpoints() -> None:
    a, b = ep(1), ep(2)
    balancer = make_balancer("least-connections", [a, b])
    balancer.acquire(a)
    balancer.set_endpoints([ep(1), ep(2)])
    assert [pick(balancer).ip for _ in range(2)] == ["127.0.0.2", "127.0.0.2"]


# --- consistent-hashing -----------------------------------------------------------------------------

KEYS = [f"user-{i}" for i in range(10_000)]


def owners(balancer: Balancer) -> dict[str, str]:
    return {k: pick(balancer, k).key for k in KEYS}


def test_consistent_hashing_is_stable_and_order_independent() -> None:
    endpoints = [ep(n) for n in range(1, 5)]
    first = owners(make_balancer("consistent-hashing", endpoints))
    assert owners(make_balancer("consistent-hashing", endpoints)) == first
    shuffled = endpoints[:]
    random.Random(4).shuffle(shuffled)
    assert owners(make_balancer("consistent-hashing", shuffled)) == first
    # Reasonably even: each of four equal endpoints owns 15-35% of the keys.
    for share in Counter(first.values()).values():
        assert 1500 < share < 3500


def test_consistent_hashing_moves_only_the_departed_endpoints_keys() -> None:
    endpoints = [ep(n) for n in range(1, 5)]
    balancer = make_balancer("consistent-hashing", endpoints)
    before = owners(balancer)
    balancer.set_endpoints(endpoints[:3])
    after = owners(balancer)
    stayed = sum(before[k] == after[k] for k in KEYS) / len(KEYS)
    assert stayed >= 0.70, stayed
    departed = endpoints[3].key
    assert all(before[k] == after[k] for k in KEYS if before[k] != departed)
    balancer.set_endpoints(endpoints)
    assert owners(balancer) == before


def test_consistent_hashing_respects_weights() -> None:
    balancer = make_balancer("consistent-hashing", [ep(1, 200), ep(2, 100)])
    counts = Counter(pick(balancer, k).ip for k in KEYS)
    assert 0.58 < counts["127.0.0.1"] / len(KEYS) < 0.75, counts


def test_consistent_hashing_routes_around_an_unhealthy_owner_and_back() -> None:
    endpoints = [ep(n) for n in range(1, 5)]
    balancer = make_balancer("consistent-hashing", endpoints)
    reference = make_balancer("consistent-hashing", [ep(n) for n in range(1, 5)])
    home = pick(balancer, "user-42")
    home.healthy = False
    away = {pick(balancer, "user-42").key for _ in range(5)}
    assert len(away) == 1 and home.key not in away
    # The sick endpoint's keys spread over the others instead of all landing on one neighbour.
    displaced = [k for k in KEYS[:2000] if pick(reference, k).key == home.key]
    assert len({pick(balancer, k).key for k in displaced}) >= 2
    home.healthy = True
    assert pick(balancer, "user-42") is home


def test_consistent_hashing_without_key_falls_back_to_round_robin() -> None:
    balancer = make_balancer("consistent-hashing", [ep(1), ep(2)])
    assert [pick(balancer).ip for _ in range(4)] == ["127.0.0.1", "127.0.0.2"] * 2


def test_consistent_hashing_slots_are_validated() -> None:
    with pytest.raises(ValueError, match="slots"):
        ConsistentHashingBalancer([ep(1)], slots=5)
    small = make_balancer("consistent-hashing", [ep(1), ep(2)], slots=100)
    assert {pick(small, k).ip for k in KEYS[:200]} == {"127.0.0.1", "127.0.0.2"}


# --- latency --------------------------------------------------------------------------------------


def test_latency_prefers_the_faster_endpoint() -> None:
    fast, slow = ep(1), ep(2)
    balancer = make_balancer("latency", [fast, slow])
    balancer.observe(fast, 0.010)
    balancer.observe(slow, 0.200)
    assert Counter(pick(balancer).ip for _ in range(20)) == {"127.0.0.1": 20}


def test_latency_load_still_counts() -> None:
    fast, slow = ep(1), ep(2)
    balancer = make_balancer("latency", [fast, slow])
    balancer.observe(fast, 0.010)
    balancer.observe(slow, 0.030)
    for _ in range(5):
        balancer.acquire(fast)
    assert pick(balancer) is slow


def test_latency_without_samples_behaves_like_least_connections() -> None:
    a, b = ep(1), ep(2)
    balancer = make_balancer("latency", [a, b])
    assert [pick(balancer).ip[-1] for _ in range(4)] == list("1212")
    balancer.acquire(a)
    assert pick(balancer) is b


def test_latency_peak_is_immediate_recovery_is_gradual() -> None:
    a = ep(1)
    balancer = LatencyBalancer([a])
    balancer.observe(a, 0.010)
    balancer.observe(a, 0.500)
    cost = balancer.cost(a)
    assert cost is not None and cost == pytest.approx(0.5, rel=0.01)
    balancer.observe(a, 0.010)
    cost = balancer.cost(a)
    assert cost is not None and 0.3 < cost < 0.4


def test_latency_a_slow_endpoint_is_retried_after_its_cost_decays() -> None:
    fast, slow = ep(1), ep(2)
    balancer = LatencyBalancer([fast, slow])
    balancer.decay = 0.05
    balancer.observe(slow, 1.0)
    balancer.observe(fast, 0.010)
    assert pick(balancer) is fast
    time.sleep(0.4)  # slow's cost: 1.0 * e^-8 < 0.001; fast's has decayed below 0.010 too
    balancer.observe(fast, 0.010)  # fast keeps being used and stays at ~10 ms
    assert pick(balancer) is slow


def test_latency_new_endpoint_starts_at_the_average_cost() -> None:
    a, b = ep(1), ep(2)
    balancer = LatencyBalancer([a, b])
    balancer.observe(a, 0.010)
    balancer.observe(b, 0.030)
    c = ep(3)
    balancer.set_endpoints([a, b, c])
    cost = balancer.cost(c)
    assert cost is not None and cost == pytest.approx(0.020, rel=0.05)
    assert pick(balancer) is a
