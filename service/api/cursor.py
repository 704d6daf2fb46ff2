"""The opaque keyset cursor of `GET /tasks`: base64url of the last row's (created_at, task_id)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

from service.api.errors import ApiError

CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
"""What `encode_cursor` produces (unpadded base64url), as the API publishes it."""


def encode_cursor(created_at: datetime, task_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(task_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises a 422 ApiError for anything this module did not produce.

    The instant is returned in UTC, as the driver sends it: an offset that takes it outside the
    years 1-9999 (`0001-01-01T00:00:00+05:00`) is an OverflowError here, not a DataError (and a
    503) from the database driver.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(task_id, str):
            raise TypeError("cursor fields are not strings")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when.astimezone(UTC), uuid.UUID(task_id)
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise ApiError(422, "INVALID_CURSOR", "the cursor is not one this API returned") from error
