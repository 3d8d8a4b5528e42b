"""Aggregation: one client request fanned out to several backends, answered with one JSON object.

The flow, KrakenD-style function composition: a backend call (`backend_call.BackendCall`, over
the pooled connections and the service's balancer), wrapped by the backend's breaker, timeout and
fallback (`_call_backend`), wrapped by the fan-out under one deadline (`_fan_out`), wrapped by the
merge (`merge.ResultShaper`, `merge.merge_result`) and the status rules (`_response`).

* Every backend is a task, started at once unless it `depends_on` others: then it starts as soon
  as those finished (it awaits them shielded, so its own timeout never cancels a dependency).
* A backend's time is `min(its timeout, what is left of the aggregate's deadline)`; at the
  deadline every task still running is cancelled, which aborts its connection.
* A backend fails with a gateway status class: 502 (refused, reset, invalid or non-2xx answer,
  a body that is not JSON), 503 (no target, breaker open), 504 (timeout, deadline). Then its
  fallback is used if it has one: the static `body`, or the last good answer to the same backend
  request within `max_age`.
* Response: `{<name or group>: <shaped answer>, ..., "_errors": {<name>: {status, reason}}}` with
  `X-Forecourt-Completed: true|false`. A failed `required` backend (without a fallback) fails the
  request with its status; so does the failure of every backend (502 when their classes differ).
* Caching: only complete answers to GET/HEAD are cacheable; anything else carries
  `Cache-Control: no-store`, which the proxy-cache plugin honours.

`AggregateExchange` is the proxy `Exchange` with `start()` replaced by the fan-out: the access phase,
the response phases of plugins (headers and body filters), the access log and the log phase are the
exchange's own, so an aggregate route behaves like any other route to plugins.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import orjson

from forecourt.http.status import VIA_VALUE
from forecourt.pipeline import Response
from forecourt.plugins.templates import Template, TemplateSource, parse_query
from forecourt.proxy.aggregate_plan import NO_VALUE
from forecourt.proxy.backend_call import BackendAnswer, BackendCall, BackendError
from forecourt.proxy.forward import Exchange
from forecourt.proxy.merge import merge_result

if TYPE_CHECKING:
    from forecourt.http.request import Request
    from forecourt.http.server import ClientConnection
    from forecourt.pipeline import Context
    from forecourt.plan import RoutePlan
    from forecourt.proxy.aggregate_plan import AggregatePlan, BackendPlan, BodyTemplate
    from forecourt.runtime import GatewayRuntime

__all__ = ["AggregateExchange", "BackendOutcome"]

log = logging.getLogger(__name__)

COMPLETED_HEADER = b"X-Forecourt-Completed"
_JSON = (b"Content-Type", b"application/json")  # as in proxy-cache's default `content_type`
_NO_STORE = (b"Cache-Control", b"no-store")
_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
_NO_BODY = object()
_GRACE = 0.05
_UNSAFE_HEADER_CHARS = str.maketrans("", "", "\r\n\x00")


class BackendOutcome:
    """What one backend contributed: a value (its answer, or a fallback) and/or an error."""

    __slots__ = (
        "answer",
        "elapsed",
        "error",
        "fallback",
        "fallback_age",
        "name",
        "reason",
        "upstream_status",
        "value",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.value: Any = _NO_BODY
        self.answer: BackendAnswer | None = None
        self.error = 0  # the gateway status class of a failure (502/503/504), 0 when it succeeded
        self.reason = ""
        self.upstream_status: int | None = None
        self.fallback: str | None = None  # "static" or "cache" when a fallback stands in
        self.fallback_age: float | None = None
        self.elapsed = 0.0

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_BODY

    def fail(self, status: int, reason: str, upstream_status: int | None = None) -> BackendOutcome:
        self.error = status
        self.reason = reason
        self.upstream_status = upstream_status
        return self

    def error_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"status": self.error, "reason": self.reason}
        if self.upstream_status is not None:
            entry["upstream_status"] = self.upstream_status
        if self.fallback is not None:
            entry["fallback"] = self.fallback
        if self.fallback_age is not None:
            entry["age"] = round(self.fallback_age, 1)
        return entry

    def log_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "status": self.answer.status if self.answer is not None else self.error,
            "latency": round(self.elapsed * 1000, 3),
        }
        if self.answer is not None:
            entry["target"] = self.answer.target
        if self.error:
            entry["error"] = self.reason
        if self.fallback is not None:
            entry["fallback"] = self.fallback
        return entry


class AggregateSource:
    """Template values for backend requests: the client request, its plugin context (consumer, JWT
    claims, shared values) and the answers of backends that already finished."""

    __slots__ = ("_headers", "_query", "ctx", "outcomes", "req")

    def __init__(self, req: Request, ctx: Context | None, outcomes: dict[str, BackendOutcome]) -> None:
        self.req = req
        self.ctx = ctx
        self.outcomes = outcomes
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def value(self, namespace: str, key: str) -> str | None:
        if namespace == "headers":
            if self._headers is None:
                table: dict[str, str] = {}
                for name, raw in self.req.headers:
                    lname = name.decode("latin-1").lower()
                    text = raw.decode("latin-1")
                    table[lname] = f"{table[lname]}, {text}" if lname in table else text
                self._headers = table
            return self._headers.get(key)
        if namespace == "query_params":
            if self._query is None:
                query: dict[str, str] = {}
                for arg, given in parse_query(self.req.query):
                    query.setdefault(arg, "" if given is None else given)
                self._query = query
            return self._query.get(key)
        if namespace == "uri_captures":
            match = self.req.match
            return match.uri_captures.get(key) if match is not None else None
        if namespace == "backends":
            return self._backend_value(key)
        ctx = self.ctx
        if ctx is None:
            return None
        if namespace == "consumer":
            return _text(getattr(ctx.consumer, key, None)) if ctx.consumer is not None else None
        if namespace == "jwt":
            return _text(ctx.jwt_claims.get(key)) if ctx.jwt_claims else None
        if namespace == "shared":
            return _text(ctx.shared.get(key))
        return None

    def _backend_value(self, key: str) -> str | None:
        name, _, rest = key.partition(".")
        outcome = self.outcomes.get(name)
        if outcome is None or not outcome.has_value:
            return None
        part, _, path = rest.partition(".")
        if part == "status":
            answer = outcome.answer
            return str(answer.status) if answer is not None else None
        if part == "headers":
            answer = outcome.answer
            found = answer.header(path.encode("latin-1")) if answer is not None else None
            return found.decode("latin-1") if found is not None else None
        node: Any = outcome.value
        for step in path.split(".") if path else ():
            if isinstance(node, dict):
                node = node.get(step)
            elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                node = node[int(step)]
            else:
                return None
        return _text(node)


class _PathSource:
    """Values percent-encoded for a path: a value can fill a segment, never add one or go up."""

    __slots__ = ("source",)

    def __init__(self, source: TemplateSource) -> None:
        self.source = source

    def value(self, namespace: str, key: str) -> str | None:
        found = self.source.value(namespace, key)
        if found is None:
            return None
        encoded = quote(found, safe="")
        return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


class AggregateExchange(Exchange):
    """The exchange of an aggregate route: `start()` runs the fan-out and answers with `respond()`."""

    __slots__ = ("backend_log", "fan_out")

    def __init__(
        self,
        runtime: GatewayRuntime,
        client: ClientConnection,
        req: Request,
        route: RoutePlan,
        ctx: Context | None = None,
    ) -> None:
        super().__init__(runtime, client, req, route, ctx)
        self.fan_out: asyncio.Task[None] | None = None
        # Per-backend status, latency and target; the access log adds it to the request's line.
        self.backend_log: dict[str, dict[str, Any]] | None = None

    def backend_outcomes(self) -> dict[str, dict[str, Any]] | None:
        return self.backend_log

    def start(self) -> None:
        """Called where a plain route starts forwarding: after the access phase let the request in."""
        if self.fan_out is not None or self.finished:
            return
        self.fan_out = self.runtime.loop.create_task(self._serve())

    def client_gone(self) -> None:
        task = self.fan_out
        if task is not None and not task.done():
            task.cancel()
        super().client_gone()

    async def _serve(self) -> None:
        try:
            response = await self._fan_out()
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("aggregate fan-out failed")
            self.fail(500, None)
            return
        self.respond(response)

    async def _fan_out(self) -> Response:
        plan = self.route.aggregate
        assert plan is not None
        loop = self.runtime.loop
        started = loop.time()
        deadline = started + plan.timeout
        outcomes: dict[str, BackendOutcome] = {}
        source = AggregateSource(self.req, self.ctx, outcomes)
        tasks: dict[str, asyncio.Task[BackendOutcome]] = {}
        for backend in plan.order:
            tasks[backend.name] = loop.create_task(self._call_backend(backend, source, tasks, deadline))
        try:
            # Each task stops itself at the deadline; the grace only bounds one that cannot.
            _, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time()) + _GRACE)
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            raise
        for task in pending:  # only a task stuck past its own deadline: cancel what is left
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for name, task in tasks.items():
            outcome = task.result() if task.done() and not task.cancelled() else None
            if outcome is None:
                outcome = BackendOutcome(name).fail(504, "cancelled at the aggregate deadline")
                outcome.elapsed = loop.time() - started
            outcomes[name] = outcome
        finished = loop.time()
        self.backend_log = {b.name: outcomes[b.name].log_entry() for b in plan.backends}
        return self._response(plan, outcomes, started, finished)

    # ------------------------------------------------------------------ one backend
    async def _call_backend(
        self,
        backend: BackendPlan,
        source: AggregateSource,
        tasks: dict[str, asyncio.Task[BackendOutcome]],
        deadline: float,
    ) -> BackendOutcome:
        loop = self.runtime.loop
        outcome = BackendOutcome(backend.name)
        started = loop.time()
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    for dependency in backend.depends_on:
                        before = await asyncio.shield(tasks[dependency])
                        if not before.has_value:
                            return self._fallback(
                                backend,
                                outcome.fail(before.error, f'depends on "{dependency}", which failed'),
                                b"",
                            )
            except TimeoutError:
                return self._fallback(backend, outcome.fail(504, "aggregate deadline passed"), b"")
            started = loop.time()
            method, head, body, cache_key = self._request(backend, source)
            breaker = backend.breaker
            if breaker is not None and not breaker.allow():
                wait = breaker.retry_after()
                return self._fallback(
                    backend, outcome.fail(503, f"circuit breaker open (retry in {wait:.1f} s)"), cache_key
                )
            call_deadline = deadline if backend.timeout is None else min(deadline, started + backend.timeout)
            call = BackendCall(
                self.runtime, backend.service, method, head, body, hash_key=self._hash_key(backend)
            )
            try:
                async with asyncio.timeout_at(call_deadline):
                    answer = await call.run()
            except TimeoutError:
                if breaker is not None:
                    breaker.record(False)
                spent = round((loop.time() - started) * 1000)
                why = "aggregate deadline passed" if call_deadline >= deadline else "backend timeout"
                return self._fallback(
                    backend, outcome.fail(504, f"timed out after {spent} ms ({why})"), cache_key
                )
            except BackendError as exc:
                if breaker is not None:
                    breaker.record(False)
                return self._fallback(backend, outcome.fail(exc.status, exc.reason), cache_key)
            outcome.answer = answer
            if breaker is not None:
                breaker.record(answer.status not in backend.failure_statuses)
            if not 200 <= answer.status < 300:
                return self._fallback(
                    backend,
                    outcome.fail(502, f"backend answered {answer.status}", upstream_status=answer.status),
                    cache_key,
                )
            try:
                value = _decode(answer)
            except ValueError as undecodable:
                return self._fallback(backend, outcome.fail(502, str(undecodable)), cache_key)
            outcome.value = value
            if backend.cache is not None:
                backend.cache.put(cache_key, loop.time(), value)
            return outcome
        finally:
            outcome.elapsed = loop.time() - started
            source.outcomes[backend.name] = outcome  # what dependent backends' templates read

    def _fallback(self, backend: BackendPlan, outcome: BackendOutcome, cache_key: bytes) -> BackendOutcome:
        """A failed outcome, with the backend's fallback value when it has one."""
        if backend.cache is not None and cache_key:
            cached = backend.cache.get(cache_key, self.runtime.loop.time())
            if cached is not None:
                age, value = cached
                outcome.value = value
                outcome.fallback = "cache"
                outcome.fallback_age = age
        elif backend.fallback_body is not NO_VALUE:
            outcome.value = backend.fallback_body
            outcome.fallback = "static"
        return outcome

    def _hash_key(self, backend: BackendPlan) -> str | None:
        hash_key = backend.service.hash_key
        return hash_key(self.req, self.client.client_ip) if hash_key is not None else None

    def _request(self, backend: BackendPlan, source: AggregateSource) -> tuple[str, bytes, bytes, bytes]:
        """(method, head without Host and framing, body, cache key) of the backend request."""
        req = self.req
        path = backend.path.render(_PathSource(source))
        prefix = backend.service.path
        if prefix and prefix != "/":
            path = prefix.rstrip("/") + path
        query = "&".join(
            f"{quote_plus(name)}={quote_plus(template.render(source))}" for name, template in backend.query
        )
        if query:
            path += ("&" if "?" in path else "?") + query
        target = path.encode("latin-1", "replace")
        lines = [backend.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        configured = [
            (name, template.render(source).translate(_UNSAFE_HEADER_CHARS).encode("latin-1", "replace"))
            for name, template in backend.headers
        ]
        # The request line and the configured headers identify the answer in the fallback cache.
        cache_key = b"".join(lines) + b"".join(name + b"=" + value + b"\n" for name, value in configured)
        named = {name.lower() for name, _ in configured}
        for name, value in configured:
            lines.append(name + b": " + value + b"\r\n")
        body = b""
        if backend.body is not None:
            if backend.body_is_json:
                body = orjson.dumps(_render_body(backend.body, source))
                if b"content-type" not in named:
                    lines.append(b"Content-Type: application/json\r\n")
            else:
                assert isinstance(backend.body, Template)
                body = backend.body.render(source).encode()
        if b"accept" not in named:
            lines.append(b"Accept: application/json\r\n")
        client = self.client
        ip = client.client_ip.encode()
        forwarded = [v for n, v in req.headers if n.lower() == b"x-forwarded-for"]
        lines.append(b"X-Forwarded-For: " + b", ".join([*forwarded, ip]) + b"\r\n")
        lines.append(client.conn_headers)
        lines.append(b"X-Forwarded-Path: " + req.raw_path.encode("latin-1", "replace") + b"\r\n")
        lines.append(b"Via: " + VIA_VALUE + b"\r\n")
        lines.append(self.runtime.request_id_header + b": " + req.request_id.encode() + b"\r\n")
        head = b"".join(lines)
        return backend.method, head, body, cache_key

    # ------------------------------------------------------------------ the merged answer
    def _response(
        self, plan: AggregatePlan, outcomes: dict[str, BackendOutcome], started: float, finished: float
    ) -> Response:
        document: dict[str, Any] = {}
        errors: dict[str, dict[str, Any]] = {}
        failed_required: BackendOutcome | None = None
        any_value = False
        for backend in plan.backends:
            outcome = outcomes[backend.name]
            if outcome.has_value:
                any_value = True
                merge_result(document, backend.key, backend.shaper.apply(outcome.value))
            if outcome.error:
                errors[backend.name] = outcome.error_entry()
                if backend.required and not outcome.has_value and failed_required is None:
                    failed_required = outcome
        req = self.req
        headers = [
            _JSON,
            (COMPLETED_HEADER, b"false" if errors else b"true"),
            (b"Via", VIA_VALUE),
            (b"X-Forecourt-Upstream-Latency", b"%d" % int((finished - started) * 1000)),
            (b"X-Forecourt-Proxy-Latency", b"%d" % int((started - req.start) * 1000)),
        ]
        if errors or req.method not in _CACHEABLE_METHODS:
            headers.append(_NO_STORE)
        if failed_required is not None or not any_value:
            if failed_required is not None:
                status = failed_required.error
                message = f'required backend "{failed_required.name}" failed: {failed_required.reason}'
            else:
                classes = {outcome.error for outcome in outcomes.values()}
                status = classes.pop() if len(classes) == 1 else 502
                message = "every backend failed"
            body = {"message": message, "request_id": req.request_id, "_errors": errors}
            return Response(status, orjson.dumps(body), headers)
        if errors:
            document["_errors"] = errors
        return Response(200, orjson.dumps(document), headers)


def _render_body(body: BodyTemplate, source: TemplateSource) -> Any:
    if isinstance(body, Template):
        return body.render(source)
    if isinstance(body, dict):
        return {key: _render_body(value, source) for key, value in body.items()}
    if isinstance(body, list):
        return [_render_body(value, source) for value in body]
    return body


def _decode(answer: BackendAnswer) -> Any:
    """The answer's JSON value; text answers become a string; anything else unparseable is an error."""
    body = answer.body
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        content_type = (answer.header(b"content-type") or b"").lower()
        if content_type.startswith(b"text/"):
            return body.decode("utf-8", "replace")
        raise ValueError("backend answered with a body that is not JSON") from None
