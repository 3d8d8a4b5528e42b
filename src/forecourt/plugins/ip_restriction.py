"""`ip-restriction`: allow or deny clients by IP address or CIDR range (Kong's plugin).

`deny` is checked first, then `allow`: an address in `deny` is refused; when `allow` is set, an
address outside it is refused. Refusals answer `status` (403) with `message` (Kong's default
"IP address not allowed: <ip>") in Kong's JSON error body.

The address is the socket peer's. When the gateway is configured with trusted proxies
(`forecourt run --trusted-ips`, `PluginEnv.trusted_ips`) and the peer is one of them, the client is
the right-most address of `X-Forwarded-For` that is not itself trusted — the same rule, and the same
code, as rate-limiting's `limit_by: ip` (nginx's `real_ip_recursive on`). IPv4-mapped IPv6 peers
(`::ffff:10.0.0.1`, from dual-stack listeners) match IPv4 ranges.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydantic import Field, field_validator, model_validator

from forecourt.pipeline import Context, Plugin, PluginConfig, PluginEnv, PluginScope, Response
from forecourt.plugins.rate_limiting import ClientAddress

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_CACHE_LIMIT = 4096


def parse_network(entry: str) -> _Network:
    """`10.0.0.0/8`, `10.1.2.3`, `2001:db8::/32` → network; ValueError naming the entry if not."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"invalid ip or cidr range: '{entry}'") from None


class IpRestrictionConfig(PluginConfig):
    allow: list[str] | None = Field(None, description="IPs or CIDR ranges to allow (others are refused).")
    deny: list[str] | None = Field(None, description="IPs or CIDR ranges to refuse.")
    status: int | None = Field(None, ge=100, le=599, description="Status of refusals (default 403).")
    message: str | None = Field(
        None, description='Message of refusals (default "IP address not allowed: <client ip>").'
    )

    @field_validator("allow", "deny")
    @classmethod
    def _valid_ranges(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or ():
            parse_network(entry)
        return value

    @model_validator(mode="after")
    def _one_list(self) -> IpRestrictionConfig:
        if not self.allow and not self.deny:
            raise ValueError("at least one of these fields must be non-empty: 'config.allow', 'config.deny'")
        return self


class AddressSet:
    """IP networks compiled to integer ranges per family, for membership tests on the hot path."""

    __slots__ = ("v4", "v6")

    def __init__(self, networks: Iterable[_Network]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for net in networks:
            bounds = (int(net.network_address), int(net.broadcast_address))
            (v4 if net.version == 4 else v6).append(bounds)
        self.v4 = tuple(sorted(v4))
        self.v6 = tuple(sorted(v6))

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def __contains__(self, address: _Address) -> bool:
        value = int(address)
        ranges = self.v4 if address.version == 4 else self.v6
        return any(low <= value <= high for low, high in ranges)


def parse_address(text: str) -> _Address | None:
    """A client address, with IPv4-mapped IPv6 turned into IPv4; None if it is not an address."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IpRestrictionPlugin(Plugin[IpRestrictionConfig]):
    """Refuses requests from addresses in `deny`, or outside `allow`."""

    name = "ip-restriction"
    priority = 990
    Config = IpRestrictionConfig

    def __init__(self, config: IpRestrictionConfig, scope: PluginScope, env: PluginEnv) -> None:
        super().__init__(config, scope, env)
        self._deny = AddressSet(parse_network(e) for e in config.deny or ())
        self._allow = AddressSet(parse_network(e) for e in config.allow or ())
        self._status = config.status if config.status is not None else 403
        self._message = config.message
        try:
            self._client_address = ClientAddress(env.trusted_ips)
        except ValueError as exc:
            raise ValueError(f"invalid trusted proxy address: {exc}") from exc
        # Verdicts by address text: clients repeat, and parsing an address costs more than a lookup.
        self._verdicts: dict[str, bool] = {}

    def _allowed(self, ip: str) -> bool:
        verdict = self._verdicts.get(ip)
        if verdict is None:
            address = parse_address(ip)
            if address is None or (self._deny and address in self._deny):
                verdict = False
            else:
                verdict = not self._allow or address in self._allow
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[ip] = verdict
        return verdict

    def client_ip(self, ctx: Context) -> str:
        """The peer, or behind trusted proxies the forwarded client (as rate-limiting sees it)."""
        peer = ctx.client_ip
        if not self._client_address.networks:
            return peer
        return self._client_address.resolve(peer, ctx.header_values(b"x-forwarded-for"))

    def access(self, ctx: Context) -> Response | None:
        ip = self.client_ip(ctx)
        if not ip:
            return Response.error(
                403, "Cannot identify the client IP address, unix domain sockets are not supported."
            )
        if self._allowed(ip):
            return None
        message = self._message if self._message is not None else f"IP address not allowed: {ip}"
        return Response.error(self._status, message)
