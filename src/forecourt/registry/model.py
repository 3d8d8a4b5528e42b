"""What the registry holds: Eureka's instance record, and the lease and status bookkeeping around it.

`InstanceInfo` is what a client registered, exactly as it said it (`status` is the instance's own
opinion of itself). `Registration` adds what the registry decides: lease timestamps, the operator's
status override, the health checker's verdict, the last change's action type. The status clients
see is `Registration.effective_status`, computed by the same precedence Eureka applies:

1. an instance that reports itself DOWN or STARTING is that, whatever else is known;
2. an instance whose active health check fails is DOWN (a fact beats an intention);
3. an operator's override (`PUT .../status?value=OUT_OF_SERVICE`) comes next;
4. otherwise the status the instance reported.

`InstanceInfo` is frozen and its metadata never mutated in place: a change builds a new record, so
the delta queue can hold cheap shallow copies of registrations as they were when they changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AMAZON_DATA_CENTER_CLASS",
    "DEFAULT_DATA_CENTER_CLASS",
    "ActionType",
    "DataCenterInfo",
    "InstanceInfo",
    "Registration",
    "Status",
]

DEFAULT_DATA_CENTER_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
AMAZON_DATA_CENTER_CLASS = "com.netflix.appinfo.AmazonInfo"


class Status(StrEnum):
    """Eureka's `InstanceStatus`."""

    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str, default: Status | None = None) -> Status:
        """A status from the wire (case-insensitive, like Eureka's `toEnum`); `default` when unknown."""
        try:
            return cls(value.strip().upper())
        except ValueError:
            if default is not None:
                return default
            raise ValueError(
                f"invalid status {value!r}: expected one of {', '.join(s.value for s in cls)}"
            ) from None


class ActionType(StrEnum):
    """What the last change to an instance was, as the delta reports it."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class DataCenterInfo:
    name: str = "MyOwn"
    class_name: str = DEFAULT_DATA_CENTER_CLASS
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One instance as its client registered it (Eureka's `InstanceInfo`, the fields that matter)."""

    instance_id: str
    app: str
    host_name: str
    ip_addr: str
    status: Status = Status.UP
    overridden_status: Status = Status.UNKNOWN
    port: int = 7001
    port_enabled: bool = True
    secure_port: int = 7002
    secure_port_enabled: bool = False
    country_id: int = 1
    data_center: DataCenterInfo = field(default_factory=DataCenterInfo)
    renewal_interval: int = 0
    """`leaseInfo.renewalIntervalInSecs` as sent; 0 when the client sent none."""
    duration: int = 0
    """`leaseInfo.durationInSecs` as sent; 0 when the client sent none (the registry's default applies)."""
    metadata: dict[str, str] = field(default_factory=dict)
    home_page_url: str = ""
    status_page_url: str = ""
    health_check_url: str = ""
    secure_health_check_url: str = ""
    vip_address: str = ""
    secure_vip_address: str = ""
    app_group_name: str = ""
    asg_name: str = ""
    sid: str = ""
    is_coordinating_discovery_server: bool = False
    last_dirty_timestamp: int = 0
    last_updated_timestamp: int = 0
    action_type: ActionType | None = None
    """Only meaningful on records decoded from a registry's answer (a delta)."""


@dataclass(slots=True)
class Registration:
    """An instance plus the registry's bookkeeping for it. Timestamps ending in `_ms` are wall-clock
    milliseconds (what goes on the wire); `renewed_at` is monotonic seconds (what expiry uses)."""

    info: InstanceInfo
    renewal_interval: int
    duration: int
    registered_ms: int
    last_renewal_ms: int
    service_up_ms: int
    last_updated_ms: int
    renewed_at: float
    override: Status = Status.UNKNOWN
    health_down: bool = False
    action_type: ActionType = ActionType.ADDED
    evicted_ms: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.info.app, self.info.instance_id)

    @property
    def effective_status(self) -> Status:
        reported = self.info.status
        if reported in (Status.DOWN, Status.STARTING):
            return reported
        if self.health_down:
            return Status.DOWN
        if self.override is not Status.UNKNOWN:
            return self.override
        return reported

    def snapshot(self) -> Registration:
        """A copy as it is now (for the delta queue); safe because `info` is immutable."""
        return copy.copy(self)
