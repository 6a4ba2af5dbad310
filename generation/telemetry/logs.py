"""LOG_FORMAT=json: one JSON object per line, with a job's structured fields, for log search by job id.

`JsonFormatter` writes time (ISO 8601, UTC), level, logger and message, the exception if any, and every
field passed with `extra=` that is one of `FIELDS` (job_id, owner_hash, model, from_state, to_state and the
durations). The human format stays the default; this one is picked by the caller (`LOG_FORMAT=json`).

A user is never logged by id: the formatter turns a record's `owner_id` into `owner_hash`, a short salted
hash (its salt: LOG_SALT, given to the formatter), stable within a deployment so one user's jobs can be
followed, and useless to look a user up elsewhere. The human format never prints the owner.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

# The structured fields a JSON line carries when a call passes them with extra=.
FIELDS = ("job_id", "owner_hash", "model", "from_state", "to_state", "wait_s", "render_s", "duration_s",
          "attempt", "worker_id", "images", "reason")
OWNER_HASH_LENGTH = 12
DEFAULT_SALT = "imagine-bot"  # set LOG_SALT in production


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; `salt` hashes owner ids (LOG_SALT)."""

    def __init__(self, salt: str | None = None) -> None:
        super().__init__()
        self.salt = salt or DEFAULT_SALT

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        owner_id = record.__dict__.get("owner_id")
        hashed = owner_hash(owner_id, self.salt) if isinstance(owner_id, int) else None
        for name in FIELDS:
            value = hashed if name == "owner_hash" else record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def owner_hash(owner_id: int, salt: str = DEFAULT_SALT) -> str:
    """A short salted hash of a user id (the salt: LOG_SALT; the default one only for tests and demos)."""
    return hashlib.blake2b(f"{salt}:{owner_id}".encode(), digest_size=OWNER_HASH_LENGTH // 2).hexdigest()


def log_transition(logger: logging.Logger, job_id: int, owner_id: int, model: str | None,
                   from_state: str | None, to_state: str, **durations: float | int | str | None) -> None:
    """Log one state change of a job with its structured fields (both formats: the human line says the same).

    `durations` are the FIELDS that apply: wait_s, render_s, duration_s, attempt, worker_id, images, reason.
    """
    unknown = set(durations) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a structured log field: {', '.join(sorted(unknown))}")
    extra: dict[str, Any] = {"job_id": job_id, "owner_id": owner_id, "model": model,
                             "from_state": from_state, "to_state": to_state, **durations}
    details = " ".join(f"{name}={value}" for name, value in durations.items() if value is not None)
    logger.info("job %d: %s → %s%s", job_id, from_state or "new", to_state, f" ({details})" if details else "",
                extra=extra)
