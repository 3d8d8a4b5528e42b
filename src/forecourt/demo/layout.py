"""Where everything of `forecourt demo` lives: ports, example files, demo credentials.

The example configs in `examples/` name the demo's fixed ports (gateways on 8000/8100/8200/8300,
admin 8001, registry 8761, services 9101…9501). `--base-port N` moves every one of them by
`N - 8000`: the services and registry are started on the moved ports and the configs are copied
into the run's work directory with every `127.0.0.1:<port>` moved the same way, so several demos
(or a test) can run side by side.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEMO_JWT_KEY",
    "DEMO_JWT_SECRET",
    "DEMO_PARTNER_KEY",
    "DemoLayout",
    "GatewayFile",
    "ServiceSpec",
    "find_examples",
    "mint_demo_token",
]

DEFAULT_BASE_PORT = 8000
HOST = "127.0.0.1"

# The demo consumer's credentials, as declared in examples/single-gateway.yaml and the BFFs.
DEMO_JWT_KEY = "forecourt-demo"
DEMO_JWT_SECRET = "forecourt-demo-secret-not-for-production"
DEMO_PARTNER_KEY = "demo-partner-key"
DEMO_USER_ID = "7"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A demo domain service: its name, its registry application name, its instances' ports."""

    name: str
    app: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GatewayFile:
    """One gateway of the demo: what it is, its example file, its listener port."""

    label: str
    path: str
    port: int


SERVICES = (
    ServiceSpec("order-service", "ORDER-SERVICE", (9101, 9102)),
    ServiceSpec("user-service", "USER-SERVICE", (9201,)),
    ServiceSpec("legacy-inventory", "LEGACY-INVENTORY", (9301,)),
    ServiceSpec("payment-service", "PAYMENT-SERVICE", (9401,)),
    ServiceSpec("product-service", "PRODUCT-SERVICE", (9501,)),
)
GATEWAYS = (
    GatewayFile("main gateway", "single-gateway.yaml", 8000),
    GatewayFile("mobile BFF", "bff/mobile.yaml", 8100),
    GatewayFile("web BFF", "bff/web.yaml", 8200),
    GatewayFile("partner BFF", "bff/partner.yaml", 8300),
)
ADMIN_PORT = 8001
REGISTRY_PORT = 8761
_HIGHEST = max(p for s in SERVICES for p in s.ports)
_LOCAL_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d{2,5})\b")


def find_examples(given: str | None) -> Path:
    """The `examples/` directory: `given`, else the current directory's, else the source tree's."""
    candidates = (
        [Path(given)]
        if given
        else [Path.cwd() / "examples", Path(__file__).resolve().parents[3] / "examples"]
    )
    for candidate in candidates:
        if all((candidate / gateway.path).is_file() for gateway in GATEWAYS):
            return candidate
    wanted = ", ".join(g.path for g in GATEWAYS)
    raise FileNotFoundError(
        f"cannot find the demo configs ({wanted}) in {', '.join(str(c) for c in candidates)}; "
        "run from the repository, or pass --examples DIR"
    )


class DemoLayout:
    """Every address of one demo run, moved by `base_port - 8000`."""

    def __init__(self, examples: Path, base_port: int = DEFAULT_BASE_PORT) -> None:
        self.examples = examples
        self.offset = base_port - DEFAULT_BASE_PORT
        if base_port < 1024 or _HIGHEST + self.offset > 65535:
            raise ValueError(
                f"--base-port {base_port}: the demo needs ports {base_port}…{_HIGHEST + self.offset}, "
                f"so pick a base between 1024 and {65535 - _HIGHEST + DEFAULT_BASE_PORT}"
            )

    def port(self, canonical: int) -> int:
        return canonical + self.offset

    def url(self, canonical: int) -> str:
        return f"http://{HOST}:{self.port(canonical)}"

    @property
    def registry_url(self) -> str:
        return f"{self.url(REGISTRY_PORT)}/eureka"

    @property
    def admin_address(self) -> str:
        return f"{HOST}:{self.port(ADMIN_PORT)}"

    def ports(self) -> list[tuple[str, int]]:
        """Every port the demo listens on, with what listens there."""
        found = [(gateway.label, self.port(gateway.port)) for gateway in GATEWAYS]
        found += [("admin API", self.port(ADMIN_PORT)), ("registry", self.port(REGISTRY_PORT))]
        found += [(spec.name, self.port(port)) for spec in SERVICES for port in spec.ports]
        return found

    def taken(self) -> list[str]:
        """A line for each demo port that something else already listens on."""
        problems = []
        for label, port in self.ports():
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((HOST, port))
                except OSError as exc:
                    problems.append(f"{HOST}:{port} ({label}) is not available: {exc.strerror}")
        return problems

    def config_files(self, workdir: Path) -> list[Path]:
        """The gateways' files: the examples themselves, or copies with every port moved."""
        if self.offset == 0:
            return [self.examples / gateway.path for gateway in GATEWAYS]
        files = []
        for gateway in GATEWAYS:
            text = (self.examples / gateway.path).read_text(encoding="utf-8")
            moved = _LOCAL_PORT.sub(lambda m: str(int(m.group(1)) + self.offset), text)
            target = workdir / "examples" / gateway.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(moved, encoding="utf-8")
            files.append(target)
        return files


def mint_demo_token(lifetime: int = 86400) -> str:
    """An HS256 JWT for the demo consumer: user 7, scopes orders:read and payments:read."""
    import jwt

    now = int(time.time())
    claims = {
        "iss": DEMO_JWT_KEY,
        "sub": DEMO_USER_ID,
        "name": "Ada Lovelace",
        "scope": "orders:read payments:read",
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, DEMO_JWT_SECRET, algorithm="HS256")
