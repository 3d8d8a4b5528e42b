"""Demo services and the `forecourt demo` tour.

`DemoService` is the JSON echo service the tests use as a real upstream; `DomainService` and
`domain_service` are the demo's order, user, payment, product and legacy-inventory services built
on it; `tour.run_demo` is `forecourt demo`.
"""

from forecourt.demo.domain import DomainService, domain_service
from forecourt.demo.service import DemoAnswer, DemoRequest, DemoService

__all__ = ["DemoAnswer", "DemoRequest", "DemoService", "DomainService", "domain_service"]
