"""Queue caps, in one place for both queues: QUEUE_PER_USER jobs per owner (a server may lower it for its
members), QUEUE_TOTAL in all, counted over jobs queued or rendering plus reservations not yet submitted.

A reservation is taken synchronously before a job is recorded, so the caps hold however many commands
arrive at once; `submit` consumes it (or the caller releases it).
"""

from __future__ import annotations

from collections.abc import Callable

from ..request import QueueFull

# (owner or None for the whole queue) -> seconds until the soonest job of theirs (or of anyone) is done
SoonestDone = Callable[[str | None], float | None]


class Admission:
    """Counts what a queue holds (through `owned` and `total`) and refuses what would go over a cap."""

    def __init__(self, per_owner_cap: int, total_cap: int, *, owned: Callable[[str], int],
                 total: Callable[[], int], soonest_done: SoonestDone | None = None) -> None:
        self.per_owner_cap = per_owner_cap
        self.total_cap = total_cap
        self._owned = owned
        self._total = total
        self._soonest_done = soonest_done or (lambda owner: None)
        self._reserved: dict[str, int] = {}  # owner -> reservations not yet submitted

    def reserve(self, owner: str, cap: int | None = None) -> Reservation:
        """Hold room for one job of `owner`, or raise QueueFull saying when room is expected. `cap` lowers
        the per-owner cap for this call (a server's own limit); it never raises it."""
        self.check_room(owner, cap)
        self._reserved[owner] = self._reserved.get(owner, 0) + 1
        return Reservation(self, owner)

    def check_room(self, owner: str, cap: int | None = None) -> None:
        owned = self._owned(owner) + self._reserved.get(owner, 0)
        limit = self.per_owner_cap if cap is None else min(cap, self.per_owner_cap)
        if owned >= limit:
            raise QueueFull(f"You already have {owned} renders queued or running (the limit is {limit}); "
                            f"{_room_expected(self._soonest_done(owner), 'your next one should finish')}")
        if self._total() + sum(self._reserved.values()) >= self.total_cap:
            raise QueueFull(f"The render queue is full ({self.total_cap} jobs); "
                            f"{_room_expected(self._soonest_done(None), 'room is expected')}")

    def _release(self, owner: str) -> None:
        left = self._reserved.get(owner, 0) - 1
        if left > 0:
            self._reserved[owner] = left
        else:
            self._reserved.pop(owner, None)


class Reservation:
    """Room in the queue held for one job of one owner, from the cap check until submit()."""

    def __init__(self, admission: Admission, owner: str) -> None:
        self._admission = admission
        self.owner = owner
        self._held = True

    def belongs_to(self, admission: Admission, owner: str) -> bool:
        return self._admission is admission and self.owner == owner

    def consume(self) -> None:
        if not self._held:
            raise RuntimeError("this reservation was already used or released")
        self._held = False
        self._admission._release(self.owner)

    def release(self) -> None:
        """Give the room back (the job was not submitted after all); harmless when already used."""
        if self._held:
            self.consume()


def _room_expected(eta_s: float | None, what: str) -> str:
    if eta_s is None:
        return "try again in a moment."
    return f"{what} in about {max(round(eta_s), 1)} s."
