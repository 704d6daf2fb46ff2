"""Hypothesis strategies for requests the API must refuse, each with the refusal it must give.

Every strategy builds a request that is invalid by the contract and the API's schemas, never
"probably invalid": pydantic's lax mode accepts `"5"`, `5.0` and `true` for an int field, so bad
ints here are out of range, fractional, or not numbers at all; `null` is only used where a field is
not optional; unknown field names avoid both the camelCase names and their snake_case twins (the
schemas accept both). A request whose mutation turned out valid would be a bug of this module, and
the test would report the write it caused.
"""

from __future__ import annotations

import base64
import json
import string
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

TASK_TYPES = frozenset({"simulate", "initialize_repository", "initialize_impact_analysis"})
STATUSES = frozenset(
    {"PENDING", "IN_PROGRESS", "RETRYING", "WAITING_FOR_EVENT", "COMPLETED", "FAILED", "CANCELLED"}
)
OUTCOMES = ("success", "retryable", "terminal", "crash", "hang")
TOP_FIELDS = frozenset({"type", "payload", "priority"})
PAYLOAD_FIELDS = frozenset({
    "durationMs", "duration_ms", "steps", "outcome", "failAttempts", "fail_attempts",
    "waitForEvent", "wait_for_event", "timeoutMs", "timeout_ms",
})
EVENT_FIELDS = frozenset({"type", "key", "payload"})
REPLAY_FIELDS = frozenset({"taskIds", "task_ids"})
OVER_BODY_LIMIT = 1_100_000  # the API's default limit is 1 MiB
JSON_TYPE = {"content-type": "application/json"}
REFUSED = frozenset({422})


@dataclass(frozen=True)
class Malformed:
    """One request and the statuses that are the right refusal of it. The repr is what a falsifying
    example prints, so it stays short even for megabyte bodies."""

    why: str
    method: str
    path: str
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str | bytes] = field(default_factory=dict)
    expect: frozenset[int] = REFUSED

    def __repr__(self) -> str:
        body = "" if self.content is None else f" body={_clip(self.content)!r} ({len(self.content)} bytes)"
        parts = (("params", self.params), ("headers", self.headers))
        extras = "".join(f" {name}={_clip(value)!r}" for name, value in parts if value)
        return f"<{self.why}: {self.method} {_clip(self.path)}{body}{extras} expect {sorted(self.expect)}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints dataclasses field by field; a megabyte body must print clipped."""
        printer.text(repr(self))


def _clip(value: Any, limit: int = 160) -> Any:
    text = value if isinstance(value, str | bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + (b"..." if isinstance(text, bytes) else "...")


def json_request(why: str, method: str, path: str, body: Any, expect: frozenset[int] = REFUSED) -> Malformed:
    return Malformed(why, method, path, json.dumps(body).encode(), headers=dict(JSON_TYPE), expect=expect)


# --- building blocks ----------------------------------------------------------------------------

texts = st.text(max_size=40)
HUGE_BODY_BYTES = 500_000  # huge, yet under the body limit once JSON-escaped


def _huge(char: str, n: int) -> str:
    escaped = len(json.dumps(char)) - 2
    return char * max(1_000, min(n, HUGE_BODY_BYTES // escaped))


huge_texts = st.builds(_huge, st.characters(), st.integers(1_000, 100_000))
strings = texts | huge_texts
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
non_objects = st.lists(any_json, max_size=3) | scalars
letters = st.text(string.ascii_letters + "!?* é漢", min_size=1, max_size=30)


def unknown_names(known: frozenset[str]) -> st.SearchStrategy[str]:
    return (texts | huge_texts).filter(lambda name: name not in known)


def not_ints(nullable_ok: bool) -> st.SearchStrategy[Any]:
    """Values no int field accepts, even in lax mode; `null` only where null is not allowed."""
    fractional = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    words = strings.map(lambda s: "x" + s)
    shapes = st.lists(any_json, max_size=2) | st.dictionaries(texts, any_json, max_size=2)
    wrong = fractional | words | shapes
    return wrong if nullable_ok else wrong | st.none()


def bad_ints(low: int, high: int, *, nullable_ok: bool = False) -> st.SearchStrategy[Any]:
    return st.integers(max_value=low - 1) | st.integers(min_value=high + 1) | not_ints(nullable_ok)


def not_strings() -> st.SearchStrategy[Any]:
    numbers = st.integers() | st.floats(allow_nan=False)
    return st.none() | st.booleans() | numbers | st.lists(texts, max_size=2)


def bad_choice(allowed: frozenset[str] | tuple[str, ...]) -> st.SearchStrategy[Any]:
    return strings.filter(lambda s: s not in allowed) | not_strings()


def bad_wait_for_event() -> st.SearchStrategy[Any]:
    good = {"type": "review", "key": "pr-1"}
    missing = st.sampled_from(["type", "key"]).map(lambda name: {k: v for k, v in good.items() if k != name})
    too_long = st.sampled_from([("type", 201), ("key", 501), ("type", 0), ("key", 0)]).map(
        lambda spec: {**good, spec[0]: "w" * spec[1]}
    )
    wrong_type = st.tuples(st.sampled_from(["type", "key"]), not_strings()).map(
        lambda kv: {**good, kv[0]: kv[1]}
    )
    extra = st.tuples(unknown_names(frozenset(good)), any_json).map(lambda kv: {**good, kv[0]: kv[1]})
    not_object = st.booleans() | st.integers() | texts | st.lists(any_json, max_size=2)
    return missing | too_long | wrong_type | extra | not_object


# --- POST /tasks ----------------------------------------------------------------------------------

valid_payloads = st.fixed_dictionaries(
    {},
    optional={
        "durationMs": st.integers(0, 1000),
        "steps": st.integers(1, 10),
        "outcome": st.sampled_from(["success", "retryable", "terminal"]),
        "failAttempts": st.integers(0, 5),
        "timeoutMs": st.integers(100, 60_000),
    },
)
valid_submissions = st.fixed_dictionaries(
    {"type": st.just("simulate"), "payload": valid_payloads}, optional={"priority": st.integers(0, 9)}
)
BAD_PAYLOAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "durationMs": bad_ints(0, 3_600_000),
    "steps": bad_ints(1, 1000),
    "outcome": bad_choice(OUTCOMES),
    "failAttempts": bad_ints(0, 1000, nullable_ok=True),
    "timeoutMs": bad_ints(100, 86_400_000, nullable_ok=True),
    "waitForEvent": bad_wait_for_event(),
}
strict_priorities = st.integers(max_value=-1) | st.integers(min_value=10) | not_ints(False) | st.booleans()
strict_priorities |= st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 9).map(str)
BAD_TOP_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": bad_choice(TASK_TYPES),
    "payload": non_objects,
    "priority": strict_priorities,
}


@st.composite
def _submission_with(draw: st.DrawFn, why: str) -> Malformed:
    body: dict[str, Any] = draw(valid_submissions)
    if why == "missing field":
        del body[draw(st.sampled_from(["type", "payload"]))]
    elif why == "unknown field":
        body[draw(unknown_names(TOP_FIELDS))] = draw(any_json)
    elif why == "unknown payload field":
        body["payload"][draw(unknown_names(PAYLOAD_FIELDS))] = draw(any_json)
    elif why == "bad payload value":
        name = draw(st.sampled_from(sorted(BAD_PAYLOAD_VALUES)))
        body["payload"][name] = draw(BAD_PAYLOAD_VALUES[name])
    else:
        name = draw(st.sampled_from(sorted(BAD_TOP_VALUES)))
        body[name] = draw(BAD_TOP_VALUES[name])
    return json_request(why, "POST", "/tasks", body)


def bad_json_bytes(path: str) -> st.SearchStrategy[Malformed]:
    """Random bytes, and a valid-looking JSON text cut short; neither is a JSON object of the schema."""
    texts_of_objects = any_json.map(lambda v: json.dumps({"type": "simulate", "payload": v}))
    cut = st.tuples(texts_of_objects, st.integers(1, 50))
    truncated = cut.map(lambda tc: tc[0][: max(1, len(tc[0]) - tc[1])].encode())
    raw = st.binary(min_size=1, max_size=300).filter(lambda b: not _is_object_or_null(b))
    return (raw | truncated).map(
        lambda content: Malformed("bad JSON bytes", "POST", path, content, headers=dict(JSON_TYPE))
    )


def _is_object_or_null(content: bytes) -> bool:
    """`null` is excluded too: it is the absent body, which POST /dlq/replay accepts."""
    try:
        return isinstance(json.loads(content), dict | None)
    except ValueError:
        return False


def over_limit(path: str) -> st.SearchStrategy[Malformed]:
    body = {"type": "simulate", "payload": {}, "pad": "x" * OVER_BODY_LIMIT}
    return st.just(json_request("body over the limit", "POST", path, body, expect=frozenset({413})))


def malformed_submissions() -> st.SearchStrategy[Malformed]:
    kinds = ["missing field", "unknown field", "unknown payload field", "bad payload value", "bad field"]
    shaped = st.sampled_from(kinds).flatmap(_submission_with)
    not_object = non_objects.map(lambda body: json_request("body not an object", "POST", "/tasks", body))
    return shaped | not_object | bad_json_bytes("/tasks") | over_limit("/tasks")


# --- headers on an otherwise valid POST /tasks ----------------------------------------------------

_printable = st.text(string.ascii_letters + string.digits + string.punctuation + " ", min_size=1, max_size=30)
long_keys = st.text(string.ascii_letters + string.digits, min_size=201, max_size=2000)
tabbed_keys = st.tuples(_printable, _printable).map(
    lambda ab: f"{ab[0].strip() or 'a'}\t{ab[1].strip() or 'b'}"
)
high_bytes = st.binary(min_size=1, max_size=4).map(lambda b: bytes(x | 0x80 for x in b))
non_ascii_keys = st.tuples(_printable, high_bytes)
bad_keys: st.SearchStrategy[str | bytes] = (
    long_keys | tabbed_keys | non_ascii_keys.map(lambda pb: pb[0].strip().encode() + pb[1]) | st.just("")
)
NON_JSON_TYPES = st.sampled_from([
    "text/plain", "application/xml", "application/x-www-form-urlencoded", "application/octet-stream",
    "multipart/form-data; boundary=x", "image/png", "text/json", "application/jsonx", "application/json-seq",
])


@st.composite
def bad_header_submissions(draw: st.DrawFn) -> Malformed:
    """A harmless valid body, so the header alone is what must be refused."""
    body = json.dumps({"type": "simulate", "payload": {"steps": 1}}).encode()
    if draw(st.booleans()):
        headers: dict[str, str | bytes] = {**JSON_TYPE, "Idempotency-Key": draw(bad_keys)}
        return Malformed("bad Idempotency-Key", "POST", "/tasks", body, headers=headers)
    headers = {"content-type": draw(NON_JSON_TYPES)}
    return Malformed("not a JSON content type", "POST", "/tasks", body, headers=headers,
                     expect=frozenset({415, 422}))


# --- GET /tasks -----------------------------------------------------------------------------------


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


AWARE = "2024-05-01T12:00:00+00:00"
SOME_UUID = "00000000-0000-4000-8000-000000000001"
not_timestamps = texts.map(lambda s: "x" + s) | not_strings() | st.just("2024-05-01T12:00:00")
not_uuids = texts.map(lambda s: "x" + s) | not_strings() | st.dictionaries(texts, texts, max_size=2)
forged_cursors = (
    st.tuples(st.just(AWARE), not_uuids) | st.tuples(not_timestamps, st.just(SOME_UUID)) | non_objects
).map(lambda value: _b64(list(value) if isinstance(value, tuple) else value))
cursors = forged_cursors | letters | st.text(string.ascii_letters, min_size=1001, max_size=1500)

LIST_PARAMS: dict[str, st.SearchStrategy[str]] = {
    "status": texts.filter(lambda s: s not in STATUSES),
    "type": texts.filter(lambda s: s not in TASK_TYPES),
    "limit": st.integers(max_value=0).map(str) | st.integers(min_value=501).map(str) | letters,
    "cursor": cursors,
}


@st.composite
def malformed_list_queries(draw: st.DrawFn) -> Malformed:
    name = draw(st.sampled_from(sorted(LIST_PARAMS)))
    value = draw(LIST_PARAMS[name])
    return Malformed(f"bad {name}", "GET", "/tasks", params={name: value})


# --- POST /events ---------------------------------------------------------------------------------

BAD_EVENT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": not_strings() | st.just("") | st.text(min_size=201, max_size=400) | huge_texts,
    "key": not_strings() | st.just("") | st.text(min_size=501, max_size=800) | huge_texts,
}


@st.composite
def _event_with(draw: st.DrawFn, why: str) -> Malformed:
    body: dict[str, Any] = {"type": "review", "key": draw(texts.map(lambda s: "k" + s))}
    if why == "missing field":
        del body[draw(st.sampled_from(["type", "key"]))]
    elif why == "unknown field":
        body[draw(unknown_names(EVENT_FIELDS))] = draw(any_json)
    else:
        name = draw(st.sampled_from(sorted(BAD_EVENT_VALUES)))
        body[name] = draw(BAD_EVENT_VALUES[name])
    return json_request(why, "POST", "/events", body)


def malformed_events() -> st.SearchStrategy[Malformed]:
    shaped = st.sampled_from(["missing field", "unknown field", "bad field"]).flatmap(_event_with)
    not_object = non_objects.map(lambda body: json_request("body not an object", "POST", "/events", body))
    return shaped | not_object | bad_json_bytes("/events")


any_unicode = st.characters(exclude_categories=())  # lone surrogates and U+0000 too
odd_texts = st.text(any_unicode, max_size=40)
odd_payloads = st.recursive(scalars | odd_texts, lambda inner: st.dictionaries(odd_texts, inner, max_size=3))
odd_events = st.fixed_dictionaries(
    {
        "type": st.text(any_unicode, min_size=1, max_size=200),
        "key": st.text(any_unicode, min_size=1, max_size=500),
    },
    optional={"payload": odd_payloads},
)


# --- POST /dlq/replay -----------------------------------------------------------------------------

uuids_as_text = st.uuids().map(str)
bad_uuid_items = texts.map(lambda s: "!" + s) | not_strings().filter(lambda v: v is not None)


@st.composite
def _replay_with(draw: st.DrawFn, why: str) -> Malformed:
    body: dict[str, Any] = {"taskIds": draw(st.lists(uuids_as_text, max_size=3))}
    if why == "unknown field":
        body[draw(unknown_names(REPLAY_FIELDS))] = draw(any_json)
    elif why == "taskIds not a list":
        scalar_or_map = st.booleans() | st.integers() | texts | st.dictionaries(texts, texts, max_size=2)
        body["taskIds"] = draw(scalar_or_map)
    elif why == "a taskId not a UUID":
        position = draw(st.integers(0, len(body["taskIds"])))
        body["taskIds"].insert(position, draw(bad_uuid_items))
    else:
        body["taskIds"] = [SOME_UUID] * 10_001
    return json_request(why, "POST", "/dlq/replay", body)


def malformed_replays() -> st.SearchStrategy[Malformed]:
    kinds = ["unknown field", "taskIds not a list", "a taskId not a UUID", "too many taskIds"]
    shaped = st.sampled_from(kinds).flatmap(_replay_with)
    not_object = (st.lists(any_json, max_size=3) | scalars.filter(lambda v: v is not None)).map(
        lambda body: json_request("body not an object", "POST", "/dlq/replay", body)
    )
    return shaped | not_object | bad_json_bytes("/dlq/replay")


# --- path ids -------------------------------------------------------------------------------------

# An id ending in "/" meets Starlette's trailing-slash redirect (307 to the id without it): the
# router's documented behaviour, not an answer about a task, so such ids are left out.
path_ids = st.text(min_size=1, max_size=80).filter(lambda s: s not in {".", ".."} and not s.endswith("/"))
TASK_ROUTES = (("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/events"), ("POST", "/tasks/{id}/cancel"))
