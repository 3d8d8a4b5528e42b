"""Forecourt's top-level `listen` extension: proxy listeners written like Kong's `proxy_listen`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from forecourt.config.fields import is_hostname, is_ip, split_host_port

# nginx listen flags Kong accepts in proxy_listen but Forecourt does not implement.
_UNSUPPORTED_FLAGS = frozenset(
    {"http2", "proxy_protocol", "reuseport", "deferred", "bind", "so_keepalive", "backlog", "ipv6only"}
)


class Listen(BaseModel):
    """One proxy listener: the address to bind and whether it terminates TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int
    ssl: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (" ssl" if self.ssl else "")


def parse_listen(value: object) -> Listen:
    """Parse `"0.0.0.0:8000"`, `"0.0.0.0:8443 ssl"` or `"[::1]:8000"`; raises `ValueError`."""
    if isinstance(value, Listen):
        return value
    if not isinstance(value, str):
        raise ValueError('expected a string like "0.0.0.0:8000" or "0.0.0.0:8443 ssl"')
    address, *flags = value.split()
    if not address:
        raise ValueError('expected a string like "0.0.0.0:8000" or "0.0.0.0:8443 ssl"')
    host, port = split_host_port(address)
    if port is None:
        raise ValueError(f'listen address "{address}" needs a port, like "0.0.0.0:8000"')
    if port == 0:
        raise ValueError("listen port must be between 1 and 65535")
    if not (is_ip(host) or is_hostname(host)):
        raise ValueError(f'invalid listen host "{host}"')
    ssl = False
    for flag in flags:
        name = flag.split("=", 1)[0]
        if flag == "ssl":
            ssl = True
        elif name in _UNSUPPORTED_FLAGS:
            raise ValueError(f'listen flag "{flag}" is not supported (only "ssl" is)')
        else:
            raise ValueError(f'unknown listen flag "{flag}" (only "ssl" is supported)')
    return Listen(host=host, port=port, ssl=ssl)
