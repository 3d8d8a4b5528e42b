"""Client-side discovery: a service that asks the registry itself and picks an instance.

The pattern that Spring Cloud apps use with Eureka (docs/patterns.md, "Spring Cloud apps →
client-side discovery"): no gateway between two services; the caller resolves the callee's name
in the registry, balances over its instances and fails over on its own.

With `forecourt demo` running (it registers two order-service instances):

    .venv/bin/python examples/client-side-discovery.py
    .venv/bin/python examples/client-side-discovery.py http://127.0.0.1:8761/eureka/ ORDER-SERVICE

Every language that calls this way needs a library like `forecourt.discovery.Client`; that is
why, on Kubernetes, server-side discovery (examples/kubernetes-dns.yaml) is usually the better
choice.
"""

from __future__ import annotations

import sys

from forecourt.discovery import Client


def main(registry: str = "http://127.0.0.1:8761/eureka/", app: str = "ORDER-SERVICE") -> int:
    with Client(registry, app, refresh_interval=10) as orders:
        for instance in orders.instances():
            print(f"{app} instance: {instance}")
        for _ in range(4):
            answer = orders.call("GET", "/orders/1001")
            order = answer.json()
            print(f"GET /orders/1001 -> {answer.status} from {answer.instance}: status {order['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
