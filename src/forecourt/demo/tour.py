"""`forecourt demo`: every integration pattern of docs/patterns.md, running on 127.0.0.1.

What it starts, in order:

1. the registry (`forecourt registry`'s server, in this process);
2. the domain services (`forecourt.demo.domain`: two order instances, users, payments, products, legacy
   inventory), each registering itself with the registry through Eureka's REST API;
3. one `forecourt run` process, the real supervisor and worker, with four gateways, one per file:
   the main gateway (examples/single-gateway.yaml) and the mobile, web and partner BFFs
   (examples/bff/*.yaml), the admin API beside them.

Once every gateway answers, it prints a demo JWT and a tour of curl commands, one or two per
pattern, each with the answer to expect, on stdout (logs go to stderr). Ctrl-C (or SIGTERM)
stops the gateways first (they drain), then deregisters the services and stops the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from forecourt.demo.client import fetch
from forecourt.demo.domain import DomainService, domain_service
from forecourt.demo.layout import (
    DEMO_PARTNER_KEY,
    GATEWAYS,
    HOST,
    REGISTRY_PORT,
    SERVICES,
    DemoLayout,
    find_examples,
    mint_demo_token,
)
from forecourt.demo.registration import Registration

__all__ = ["TourStep", "run_demo", "tour_steps"]

log = logging.getLogger("forecourt.demo")

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class TourStep:
    """One command of the tour and the answer it gets (the outcome starts with the status)."""

    section: str
    command: str
    outcome: str


def tour_steps(layout: DemoLayout, forecourt: str) -> list[TourStep]:
    """The tour, in order: routing, offloading, aggregation, ACL, BFFs, discovery."""
    main, mobile, web, partner = (layout.url(g.port) for g in GATEWAYS)
    registry = layout.registry_url
    legacy = layout.url(next(s for s in SERVICES if s.name == "legacy-inventory").ports[0])
    bearer = '-H "Authorization: Bearer $TOKEN"'
    key = f'-H "apikey: {DEMO_PARTNER_KEY}"'
    routing = "1. One API gateway: routing, with instances found in the registry (server-side discovery)"
    offloading = "2. Gateway offloading: authentication, authorization, rate limiting"
    aggregation = "3. Gateway aggregation: one request, three services, partial answers marked"
    acl = "4. Anti-corruption layer: the legacy inventory behind a clean model"
    bff = "5. Backends for frontends: one gateway per client, each in its own file"
    discovery = "6. Client-side discovery: ask the registry yourself"
    return [
        TourStep(
            routing,
            f"curl -si {main}/api/orders/1001",
            "200: order 1001; run it again and X-Served-By alternates between the two "
            "order-service instances",
        ),
        TourStep(
            routing,
            f"curl -si {main}/api/users/7",
            "200: user 7, with X-Request-ID (correlation id) and X-Cache-Status: Miss, then Hit",
        ),
        TourStep(
            routing, f"curl -s {main}/nowhere", '404: {"message":"no Route matched with those values",…}'
        ),
        TourStep(
            offloading,
            f'curl -s "{main}/api/payments?order=1001"',
            "401: no token, so payment-service never sees the request",
        ),
        TourStep(
            offloading,
            f'curl -s {bearer} "{main}/api/payments?order=1001"',
            '200: the payment, and "consumer":"demo-user": the gateway tells the service who called',
        ),
        TourStep(
            offloading,
            f"for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' {main}/api/products; done",
            "200 200 200 200 200 429: five requests a minute per client on this route",
        ),
        TourStep(
            aggregation,
            f'curl -si "{main}/dashboard?user=7"',
            '200: {"user":…,"orders":[…],"recommendations":[…]} with X-Forecourt-Completed: true',
        ),
        TourStep(
            aggregation,
            f'curl -si "{main}/dashboard?user=7&delay=1000"',
            '200: recommendations time out after 300 ms; X-Forecourt-Completed: false and "_errors" '
            "names what failed",
        ),
        TourStep(
            acl,
            f'curl -s "{legacy}/inventory?sku=A-1"',
            '200: the legacy model {"sku_code":"A-1","qty_avail":"7","loc_id":"WH-3"}',
        ),
        TourStep(
            acl,
            f"curl -s {main}/api/stock/A-1",
            '200: the domain model {"productId":"A-1","availableQuantity":7,"warehouseId":"WH-3"}',
        ),
        TourStep(
            acl,
            f"curl -s {main}/api/stock/Z-9",
            '404: a problem+json "Product not found", not the legacy system\'s error',
        ),
        TourStep(
            bff,
            f"curl -s {bearer} {mobile}/home",
            "200: mobile's home screen in one round trip, every field trimmed to what the app shows",
        ),
        TourStep(
            bff,
            f"curl -s {bearer} {mobile}/orders/1001",
            "200: order 1001 without its addresses, carrier and audit fields",
        ),
        TourStep(
            bff,
            f'curl -s --cookie "session=$TOKEN" {web}/dashboard',
            "200: web's rich dashboard: the full profile, orders with items and addresses, recommendations",
        ),
        TourStep(
            bff,
            f'curl -si -X OPTIONS -H "Origin: http://localhost:3000" '
            f'-H "Access-Control-Request-Method: GET" {web}/dashboard',
            "200: the CORS preflight, answered by the web BFF (Access-Control-Allow-Origin)",
        ),
        TourStep(bff, f"curl -s {partner}/v1/orders/1001", "401: partners need an API key"),
        TourStep(
            bff,
            f"curl -s {key} {partner}/v1/orders/1001",
            '200: the stable v1 contract {"orderId":"1001","status":"SHIPPED","totalAmount":"74.70",…}; '
            "20 requests a minute per partner",
        ),
        TourStep(
            bff,
            f"curl -s {key} {partner}/v1/stock/A-1",
            '200: {"sku":"A-1","available":7,"warehouse":"WH-3"}',
        ),
        TourStep(
            discovery,
            f'curl -s -H "Accept: application/json" {registry}/apps/ORDER-SERVICE',
            "200: the two order-service instances, as they registered themselves",
        ),
        TourStep(
            discovery,
            f"{forecourt} resolve ORDER-SERVICE --registry {registry}/",
            f"{HOST}:{layout.port(9101)} UP and {HOST}:{layout.port(9102)} UP "
            "(examples/client-side-discovery.py does it in Python)",
        ),
    ]


def render_tour(
    layout: DemoLayout, files: Sequence[Path], token: str, forecourt: str, access_log: Path
) -> str:
    """The text printed once the demo is up."""
    lines = ["", "Forecourt demo: the integration patterns, on 127.0.0.1 (Ctrl-C stops everything)", ""]
    for gateway, path in zip(GATEWAYS, files, strict=True):
        lines.append(f"  {gateway.label:<13} {layout.url(gateway.port):<24} {_shown(path)}")
    lines.append(f"  {'admin API':<13} http://{layout.admin_address:<17} GET /gateways lists the four")
    instances = sum(len(s.ports) for s in SERVICES)
    registry = layout.registry_url + "/"
    lines.append(f"  {'registry':<13} {registry:<24} {instances} instances of {len(SERVICES)} services")
    for spec in SERVICES:
        ports = ", ".join(str(layout.port(p)) for p in spec.ports)
        lines.append(f"  {'':<13} {spec.name:<24} {HOST}:{ports}")
    lines.append(f"  {'access log':<13} {access_log}")
    lines += [
        "",
        "Demo JWT (HS256; consumer demo-user, user 7, scopes orders:read payments:read; valid 24 h):",
        f"  export TOKEN={token}",
    ]
    section = ""
    for step in tour_steps(layout, forecourt):
        if step.section != section:
            section = step.section
            lines += ["", section]
        lines += [f"  {step.command}", f"    → {step.outcome}"]
    mobile = files[1]
    lines += [
        "",
        "Isolation: each BFF is its own file and reloads on its own. Break "
        f"{_shown(mobile)} and save it: mobile keeps its last good config, web and partner never notice.",
        "",
    ]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def _forecourt_command() -> str:
    """How the user runs `forecourt` (the venv's script when it is not on PATH)."""
    beside = Path(sys.executable).parent / "forecourt"
    if shutil.which("forecourt") == str(beside) or not beside.exists():
        return "forecourt"
    return _shown(beside)


def run_demo(base_port: int, examples: str | None = None) -> int:
    """`forecourt demo`: start everything, print the tour, serve until Ctrl-C or SIGTERM."""
    import uvloop

    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    log.setLevel(logging.INFO)
    try:
        layout = DemoLayout(find_examples(examples), base_port)
    except (FileNotFoundError, ValueError) as exc:
        print(f"forecourt demo: {exc}", file=sys.stderr)
        return 2
    taken = layout.taken()
    if taken:
        for problem in taken:
            print(f"forecourt demo: {problem}", file=sys.stderr)
        print(
            "forecourt demo: is another demo running? Stop it, or move every port with --base-port "
            f"(e.g. --base-port {base_port + 10000}).",
            file=sys.stderr,
        )
        return 1
    return uvloop.run(_Demo(layout).run())


class _Demo:
    """One run: the registry, the services, the gateways' process, and their orderly stop."""

    def __init__(self, layout: DemoLayout) -> None:
        self.layout = layout
        self.workdir = Path(tempfile.mkdtemp(prefix="forecourt-demo-"))
        self.stop = asyncio.Event()
        self.servers: list[asyncio.Server] = []
        self.services: list[DomainService] = []
        self.registrations: list[Registration] = []
        self.gateways: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        from forecourt.registry import RegistryOptions, RegistryServer, RegistryStore

        registry = RegistryServer(
            RegistryOptions(host=HOST, port=self.layout.port(REGISTRY_PORT)), RegistryStore()
        )
        try:
            await registry.start()
            await self._start_services()
            files = self.layout.config_files(self.workdir)
            access_log = self.workdir / "access.log"
            await self._start_gateways(files, access_log)
            token = mint_demo_token()
            if not await self._wait_ready(token):
                return 1
            print(render_tour(self.layout, files, token, _forecourt_command(), access_log), flush=True)
            status = await self._serve()
        finally:
            await self._stop_gateways()
            for registration in self.registrations:
                await registration.deregister()
            for server in self.servers:
                server.close()
            for service in self.services:
                service.close_connections()
            await registry.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
        log.info("demo stopped")
        return status

    async def _start_services(self) -> None:
        for spec in SERVICES:
            for canonical in spec.ports:
                port = self.layout.port(canonical)
                service = domain_service(spec.name, f"{HOST}:{port}")
                self.services.append(service)
                self.servers.append(await service.serve(HOST, port))
                registration = Registration(self.layout.registry_url, spec.app, HOST, port)
                await registration.register()
                self.registrations.append(registration)
        log.info("registered %d service instances", len(self.registrations))

    async def _start_gateways(self, files: Sequence[Path], access_log: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "forecourt.cli",
            "run",
            *(str(f) for f in files),
            "--admin-listen",
            self.layout.admin_address,
            "--access-log",
            str(access_log),
            "--state-dir",
            str(self.workdir / "state"),
            "--drain-timeout",
            "3",
        ]
        self.gateways = await asyncio.create_subprocess_exec(*command, preexec_fn=_exit_with_parent)

    async def _wait_ready(self, token: str) -> bool:
        """Until every gateway answers a real request (its plugins built, its services found)."""
        main, mobile, web, partner = (self.layout.url(g.port) for g in GATEWAYS)
        probes = [
            (f"{main}/api/orders/1001", {}),
            (f"{mobile}/home", {"Authorization": f"Bearer {token}"}),
            (f"{web}/dashboard", {"Cookie": f"session={token}"}),
            (f"{partner}/v1/stock/A-1", {"apikey": DEMO_PARTNER_KEY}),
        ]
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        pending = list(probes)
        while pending:
            if self.stop.is_set():
                return False
            if self.gateways is not None and self.gateways.returncode is not None:
                log.error("the gateways exited at startup (status %s)", self.gateways.returncode)
                return False
            url, headers = pending[0]
            with contextlib.suppress(OSError, TimeoutError):
                answer = await fetch("GET", url, headers=headers, timeout=2.0)
                if answer.status == 200:
                    pending.pop(0)
                    continue
            if asyncio.get_running_loop().time() > deadline:
                log.error("the gateways did not become ready within %gs (%s)", READY_TIMEOUT, url)
                return False
            await asyncio.sleep(0.1)
        return True

    async def _serve(self) -> int:
        assert self.gateways is not None
        exited = asyncio.ensure_future(self.gateways.wait())
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if exited.done():
            log.error("the gateways exited (status %s); stopping the demo", exited.result())
            return 1
        exited.cancel()
        return 0

    async def _stop_gateways(self) -> None:
        process = self.gateways
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _exit_with_parent() -> None:
    """In the gateways' process: Linux sends SIGTERM when the demo dies, so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
