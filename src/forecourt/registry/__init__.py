"""The built-in service registry: Eureka's REST API, leases, overrides, persistence, health checks.

`forecourt registry` runs it (server.py); the store (store.py) holds the state and writes it to the
data file; the codec (codec.py) speaks Eureka's JSON and XML, for the server and for clients of any
Eureka server (`forecourt.discovery.client.EurekaProvider`).
"""

from forecourt.registry.codec import CodecError
from forecourt.registry.model import ActionType, InstanceInfo, Registration, Status
from forecourt.registry.server import RegistryOptions, RegistryServer, RegistryStartError, run_registry
from forecourt.registry.store import RegistryDataError, RegistryStore, load_store

__all__ = [
    "ActionType",
    "CodecError",
    "InstanceInfo",
    "Registration",
    "RegistryDataError",
    "RegistryOptions",
    "RegistryServer",
    "RegistryStartError",
    "RegistryStore",
    "Status",
    "load_store",
    "run_registry",
]
