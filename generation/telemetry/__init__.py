"""What an operator watches: Prometheus metrics, /healthz and /readyz, and JSON log lines.

Used by the gateway and the render workers (bot and generation import it); storage does not.
"""

from .health import HealthServer, ReadinessCheck
from .logs import JsonFormatter, log_transition, owner_hash
from .metrics import Metrics, Outcome, Refusal, Role

__all__ = ["HealthServer", "JsonFormatter", "Metrics", "Outcome", "ReadinessCheck", "Refusal", "Role",
           "log_transition", "owner_hash"]
