"""A real service for the tests: the demo service, registered with the unmodified py-eureka-client.

    python -m tests.registry.eureka_service --registry URL --app NAME --port PORT
        [--renew SECONDS] [--duration SECONDS] [--discover APP]

Prints `ready` once registered; with `--discover APP` it also uses py-eureka-client's own
discovery (full fetch, then deltas checked against `apps__hashcode`) and prints `seen ID,ID,...`
whenever the set of UP instances of APP it knows changes. SIGTERM stops the client (which
deregisters) and exits; SIGKILL leaves the registration behind, as a crash would.

py-eureka-client runs its heartbeat in a thread that outlives `stop()`, so a service process (not
a test process) is the only place it can be used without leaking heartbeats into later tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from py_eureka_client import eureka_client

from forecourt.demo.service import DemoService


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--renew", type=int, default=1)
    parser.add_argument("--duration", type=int, default=90)
    parser.add_argument("--discover")
    args = parser.parse_args()

    service = DemoService(f"{args.app}@{args.port}")
    server = await service.serve("127.0.0.1", args.port)
    client = eureka_client.EurekaClient(
        eureka_server=args.registry,
        app_name=args.app,
        instance_id=f"{args.app.lower()}-{args.port}",
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=args.port,
        renewal_interval_in_secs=args.renew,
        duration_in_secs=args.duration,
        should_discover=bool(args.discover),
    )
    await client.start()
    print("ready", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    last: list[str] | None = None
    while not stop.is_set():
        if args.discover:
            apps = client.applications
            app = apps.get_application(args.discover) if apps is not None else None
            current = sorted(i.instanceId for i in app.up_instances) if app is not None else []
            if current != last:
                print("seen " + ",".join(current), flush=True)
                last = current
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    await client.stop()
    server.close()
    service.close_connections()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
