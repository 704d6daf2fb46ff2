"""`POST /events`: an outside event resumes every task parked on its type and key."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from service.api import queries
from service.api.deps import ACQUIRE_TIMEOUT_S, Pool
from service.api.json_body import StrictJsonRoute
from service.api.openapi import errors
from service.api.schemas import ExternalEvent, Resumed
from service.db.tasks import change_status, enqueue_job
from service.models import Status

log = logging.getLogger("ast.api")
router = APIRouter(tags=["events"], route_class=StrictJsonRoute)


@router.post("/events", status_code=202, response_model=Resumed, responses=errors(422, 503))
async def post_event(event: ExternalEvent, pool: Pool) -> Resumed:
    """Each waiting task goes back to PENDING with the event as `resume_data` and a new job message.

    Rows locked by a concurrent request are skipped: that request is resuming them already.
    """
    resume_data = {"type": event.type, "key": event.key, "payload": event.payload}
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
        waiting = await conn.fetch(queries.WAITING_FOR_EVENT, event.type, event.key)
        for row in waiting:
            resumed = await change_status(
                conn, row, Status.PENDING, message=f"resumed by event {event.type}",
                resume_data=resume_data, wait_event_type=None, wait_event_key=None,
            )
            await enqueue_job(conn, resumed)
            log.info("task resumed",
                     extra={"taskId": str(row["task_id"]), "type": row["type"], "step": "resume"})
    return Resumed(resumed=len(waiting))
