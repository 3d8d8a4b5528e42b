"""`forecourt demo` as a user runs it: start it, read the tour it prints, run every command.

The demo runs as a subprocess on moved ports (`--base-port`), so it never clashes with a demo a
developer has running. Each printed command is executed over real sockets (curl's options the
tour uses are interpreted here: -s -i -o -w -X -H --cookie) and must answer with the status the
tour prints after `→`, and, where the tour quotes a JSON document in full, with that document.
The checks after that are the patterns' own promises: trimmed mobile payloads against web's rich
ones, a partial aggregate, the translated legacy model, and a clean stop.
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from forecourt.demo.layout import DemoLayout, find_examples

START_TIMEOUT = 45.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    section: str
    command: str
    outcome: str


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Tour:
    text: str
    token: str
    steps: list[Step]

    def step(self, *fragments: str) -> Step:
        found = [s for s in self.steps if all(f in s.command for f in fragments)]
        assert len(found) == 1, f"{fragments!r} match {len(found)} tour commands"
        return found[0]


class DemoProcess:
    def __init__(self, base_port: int) -> None:
        self.base_port = base_port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forecourt.cli", "demo", "--base-port", str(base_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self.readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def read_tour(self) -> Tour:
        text: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no tour within the timeout:\n" + "".join(self.stderr_lines)) from None
            if line is None:
                raise AssertionError("the demo exited before its tour:\n" + "".join(self.stderr_lines))
            text.append(line)
            if line.startswith("Isolation:"):
                return parse_tour("\n".join(text))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self.readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


def parse_tour(text: str) -> Tour:
    token = re.search(r"export TOKEN=(\S+)", text)
    assert token is not None, text
    steps: list[Step] = []
    section = ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^\d\. ", line):
            section = line
        elif line.startswith("  ") and index + 1 < len(lines) and lines[index + 1].startswith("    → "):
            steps.append(Step(section, line.strip(), lines[index + 1].strip()[2:]))
    return Tour(text, token.group(1), steps)


def free_base_port() -> int:
    """A base port where every port the demo needs is free now."""
    examples = find_examples(None)
    for _ in range(50):
        base = random.randrange(20000, 60000, 10)
        if not DemoLayout(examples, base).taken():
            return base
    raise RuntimeError("no free range of ports for the demo")


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[DemoProcess, Tour]]:
    process = DemoProcess(free_base_port())
    try:
        tour = process.read_tour()
        yield process, tour
    finally:
        process.stop()


# ------------------------------------------------------------------------------ curl, in Python
def curl(command: str, token: str) -> Reply:
    """Run one `curl` command line of the tour (the options it uses) over a real socket."""
    args = shlex.split(command.replace("$TOKEN", token))
    assert args[0] == "curl", command
    method = "GET"
    headers: dict[str, str] = {}
    url = ""
    options = iter(args[1:])
    for arg in options:
        if arg in ("-s", "-i", "-si"):
            continue
        if arg == "-X":
            method = next(options)
        elif arg == "-H":
            name, _, value = next(options).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "--cookie":
            headers["Cookie"] = next(options)
        elif arg in ("-o", "-w"):
            next(options)
        else:
            assert not arg.startswith("-"), f"unexpected curl option {arg} in {command}"
            url = arg
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def run_step(step: Step, token: str) -> list[Reply]:
    loop = re.match(r"for i in ([\d ]+); do (curl .*); done$", step.command)
    if loop is not None:
        command = loop.group(2)
        return [curl(command, token) for _ in loop.group(1).split()]
    return [curl(step.command, token)]


def expected_statuses(outcome: str) -> list[int]:
    found = re.match(r"((?:\d{3} )*\d{3})\b", outcome)
    assert found is not None, outcome
    return [int(s) for s in found.group(1).split()]


def quoted_document(outcome: str) -> Any:
    """The JSON document an outcome quotes in full (none when it elides with …)."""
    found = re.search(r"\{.*\}", outcome)
    if found is None or "…" in found.group(0):
        return None
    return json.loads(found.group(0))


# ------------------------------------------------------------------------------------ the tour
def test_the_tour_covers_every_pattern(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    sections = {step.section for step in tour.steps}
    for pattern in (
        "API gateway",
        "offloading",
        "aggregation",
        "Anti-corruption",
        "Backends for frontends",
        "discovery",
    ):
        assert any(pattern in section for section in sections), pattern
    for label in ("main gateway", "mobile BFF", "web BFF", "partner BFF", "registry", "admin API"):
        assert label in tour.text


def test_every_curl_answers_as_printed(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    for step in tour.steps:
        if not step.command.startswith(("curl", "for ")):
            continue
        replies = run_step(step, tour.token)
        statuses = [reply.status for reply in replies]
        expected = expected_statuses(step.outcome)
        if statuses != expected and step.command.startswith("for "):
            # A minute window may have ended in the middle of the loop: the next run is inside one.
            statuses = [reply.status for reply in run_step(step, tour.token)]
        assert statuses == expected, f"{step.command}\n  printed: {step.outcome}\n  got: {statuses}"
        document = quoted_document(step.outcome)
        if document is not None:
            body = replies[-1].json()
            assert {k: body.get(k) for k in document} == document, step.command


def test_discovery_finds_both_order_instances(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    step = tour.step("/api/orders/1001")
    served = {curl(step.command, tour.token).headers["X-Served-By"] for _ in range(4)}
    assert len(served) == 2, served
    registry = curl(tour.step("/apps/ORDER-SERVICE").command, tour.token).json()
    assert len(registry["application"]["instance"]) == 2
    resolve = next(s for s in tour.steps if " resolve " in s.command)
    args = shlex.split(resolve.command)[1:]
    result = subprocess.run(
        [sys.executable, "-m", "forecourt.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    printed = re.findall(r"127\.0\.0\.1:\d+ UP", resolve.outcome)
    assert sorted(result.stdout.split("\n")[:2]) == sorted(printed)
    registry = args[args.index("--registry") + 1]
    script = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client-side-discovery.py"), registry, "ORDER-SERVICE"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.count("-> 200") == 4
    assert len(set(re.findall(r"from (127\.0\.0\.1:\d+)", script.stdout))) == 2


def test_offloading_tells_the_service_who_called(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    reply = curl(tour.step("/api/payments", "$TOKEN").command, tour.token)
    assert reply.json()["consumer"] == "demo-user"
    users = curl(tour.step("/api/users/7").command, tour.token)
    assert users.headers["X-Request-ID"]
    assert users.headers["X-Cache-Status"] in ("Miss", "Hit")


def test_aggregation_and_partial_answers(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    full = curl(tour.step('/dashboard?user=7"').command, tour.token)
    assert full.headers["X-Forecourt-Completed"] == "true"
    body = full.json()
    assert body["user"]["id"] == "7"
    assert {o["id"] for o in body["orders"]} == {"1001", "1002"}
    assert body["recommendations"]
    partial = curl(tour.step("delay=1000").command, tour.token)
    assert partial.status == 200
    assert partial.headers["X-Forecourt-Completed"] == "false"
    degraded = partial.json()
    assert "recommendations" in degraded["_errors"]
    assert degraded["user"]["id"] == "7"


def test_the_acl_hides_the_legacy_model(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    legacy = curl(tour.step("/inventory?sku=A-1").command, tour.token).json()
    clean = curl(tour.step("/api/stock/A-1").command, tour.token).json()
    assert legacy == {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3"}
    assert clean == {"productId": "A-1", "availableQuantity": 7, "warehouseId": "WH-3"}
    missing = curl(tour.step("/api/stock/Z-9").command, tour.token)
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["title"] == "Product not found"


def test_mobile_gets_trimmed_payloads_and_web_rich_ones(demo: tuple[DemoProcess, Tour]) -> None:
    process, tour = demo
    mobile = curl(tour.step("/home").command, tour.token)
    web = curl(tour.step("session=$TOKEN").command, tour.token)
    small, rich = mobile.json(), web.json()
    assert set(small["user"]) == {"id", "name", "tier"}
    assert all(set(order) <= {"id", "status", "total"} for order in small["orders"])
    assert len(small["recommendations"]) == 3
    assert all(set(item) <= {"sku", "name", "price"} for item in small["recommendations"])
    assert rich["user"]["email"] == "ada@example.com"
    assert all("items" in order and "shippingAddress" in order for order in rich["orders"])
    assert len(mobile.body) * 3 < len(web.body)
    mobile_order = tour.step("/orders/1001", "Bearer").command
    order = curl(mobile_order, tour.token).json()
    assert order["id"] == "1001" and "items" in order
    assert not {"shippingAddress", "billingAddress", "carrier", "audit"} & set(order)
    # The same order through the web BFF's pass-through route: everything.
    web_port = str(process.base_port + 200)
    web_order = mobile_order.replace(f":{process.base_port + 100}/orders", f":{web_port}/api/orders")
    web_order = web_order.replace('-H "Authorization: Bearer $TOKEN"', '--cookie "session=$TOKEN"')
    full = curl(web_order, tour.token).json()
    assert {"shippingAddress", "billingAddress", "carrier", "audit"} <= set(full)
    gzip = curl(
        tour.step("/home").command.replace("curl -s", "curl -s -H 'Accept-Encoding: gzip'"), tour.token
    )
    assert gzip.headers["Content-Encoding"] == "gzip"
    preflight = curl(tour.step("-X OPTIONS").command, tour.token)
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_partner_gets_a_stable_versioned_contract(demo: tuple[DemoProcess, Tour]) -> None:
    _, tour = demo
    command = tour.step("apikey", "/v1/orders/").command
    order = curl(command, "")
    assert order.json() == {
        "orderId": "1001",
        "status": "SHIPPED",
        "placedAt": "2024-05-02T09:14:00Z",
        "totalAmount": "74.70",
        "currency": "EUR",
        "lines": [{"sku": "A-1", "quantity": 3}],
    }
    assert order.headers["X-RateLimit-Limit-Minute"] == "20"
    unknown = curl(command.replace("1001", "9999"), "")
    assert unknown.status == 404
    assert unknown.json()["type"] == "https://partners.example.com/problems/order-not-found"


def test_the_demo_stops_cleanly(demo: tuple[DemoProcess, Tour]) -> None:
    process, _ = demo
    assert process.stop() == 0
    assert not DemoLayout(find_examples(None), process.base_port).taken()


def test_a_taken_port_is_a_clear_error() -> None:
    import socket

    base = free_base_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 100))  # the mobile BFF's port
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "forecourt.cli", "demo", "--base-port", str(base)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{base + 100} (mobile BFF) is not available" in result.stderr
    assert "--base-port" in result.stderr
