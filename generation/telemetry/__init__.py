"""What an operator watches: Prometheus metrics, /healthz and /readyz, and the log lines (human or JSON).

Used by the gateway and the render workers (bot and generation import it); storage does not. Each process's
composition root (bot.app for the gateway, generation.worker for a worker) builds one `Metrics`, injects it
where events happen, and calls `start_health` with the checks that say the process can serve.
"""

from .health import HealthServer, ReadinessCheck, database_check, event_check, start_health
from .log_setup import apply_log_format, configure_logging
from .logs import JsonFormatter, log_transition, owner_hash
from .metrics import Metrics, Outcome, Refusal, Role

__all__ = ["HealthServer", "JsonFormatter", "Metrics", "Outcome", "ReadinessCheck", "Refusal", "Role",
           "apply_log_format", "configure_logging", "database_check", "event_check", "log_transition",
           "owner_hash", "start_health"]
