"""Task statuses and the status machine every transition is checked against."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    RETRYING = "RETRYING"
    WAITING_FOR_EVENT = "WAITING_FOR_EVENT"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

# IN_PROGRESS -> IN_PROGRESS is a new attempt after a lost worker; IN_PROGRESS -> PENDING is a
# hand-back on graceful shutdown; WAITING_FOR_EVENT -> PENDING is a resume by POST /events.
LEGAL_MOVES: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.IN_PROGRESS, Status.CANCELLED, Status.FAILED}),
    Status.IN_PROGRESS: frozenset(
        {
            Status.IN_PROGRESS,
            Status.PENDING,
            Status.RETRYING,
            Status.WAITING_FOR_EVENT,
            Status.COMPLETED,
            Status.FAILED,
            Status.CANCELLED,
        }
    ),
    Status.RETRYING: frozenset({Status.IN_PROGRESS, Status.CANCELLED, Status.FAILED}),
    Status.WAITING_FOR_EVENT: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

INITIAL_STATUS = Status.PENDING


def is_legal(previous: Status | None, new: Status) -> bool:
    """A task starts PENDING; after that only the moves in LEGAL_MOVES are allowed."""
    if previous is None:
        return new is INITIAL_STATUS
    return new in LEGAL_MOVES[previous]


class TaskType(StrEnum):
    INITIALIZE_REPOSITORY = "initialize_repository"
    INITIALIZE_IMPACT_ANALYSIS = "initialize_impact_analysis"
    SIMULATE = "simulate"
