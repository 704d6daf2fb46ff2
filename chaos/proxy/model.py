"""The values Toxiproxy's HTTP API speaks about: proxies, toxics, and its errors (pure, no I/O).

Shapes and status codes follow Toxiproxy 2.x: a proxy is `{name, listen, upstream, enabled,
toxics}`, a toxic `{name, type, stream, toxicity, attributes}` with every attribute of its
type present (zero when not given), an error `{"error": message, "status": code}`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

VERSION = "2.12.0"
"""The Toxiproxy release whose API this server speaks."""

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")

TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}
"""Every supported toxic type and its integer attributes, in Toxiproxy's JSON order."""

_revisions = itertools.count(1)


class ApiError(Exception):
    """An answer other than success: Toxiproxy's message and HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def bad_request(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)


@dataclass(frozen=True)
class Toxic:
    """One toxic as configured. `revision` changes on every update, so each live link knows to
    roll its toxicity again and restart the toxic's timers; it is not part of the JSON."""

    name: str
    type: str
    stream: Stream
    toxicity: float
    attributes: Mapping[str, int]
    revision: int = field(default_factory=lambda: next(_revisions), compare=False)

    def attr(self, key: str) -> int:
        return self.attributes.get(key, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class ProxyConfig:
    """A proxy's fields as the API sees them (toxics are listed beside it, by the collection)."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True

    def to_json(self, toxics: list[Toxic]) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in toxics],
        }


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise bad_request("expected a JSON object")
    return body


def _string(body: Mapping[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean")
    return value


def _toxicity(body: Mapping[str, Any], default: float) -> float:
    value = body.get("toxicity", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise bad_request("toxicity must be a number from 0 to 1")
    return float(value)


def parse_new_proxy(body: Any) -> ProxyConfig:
    """POST /proxies and each item of POST /populate: name and upstream are required."""
    fields = _object(body)
    name = _string(fields, "name", "")
    upstream = _string(fields, "upstream", "")
    for key, value in (("name", name), ("upstream", upstream)):
        if not value:
            raise ApiError(f"missing required field: {key}", 400)
    listen = _string(fields, "listen", "") or "127.0.0.1:0"
    return ProxyConfig(name, listen, upstream, _bool(fields, "enabled", True))


def parse_proxy_update(current: ProxyConfig, body: Any) -> ProxyConfig:
    """POST/PATCH /proxies/{name}: fields not given keep their value; the name cannot change."""
    fields = _object(body)
    return replace(
        current,
        listen=_string(fields, "listen", current.listen),
        upstream=_string(fields, "upstream", current.upstream),
        enabled=_bool(fields, "enabled", current.enabled),
    )


def _attributes(toxic_type: str, raw: Any, base: Mapping[str, int]) -> dict[str, int]:
    if raw is None:
        raw = {}
    given = _object(raw)
    result: dict[str, int] = {}
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        value = given.get(key, base.get(key, 0))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request(f"attribute {key} must be a number")
        if value < 0:
            raise bad_request(f"attribute {key} must not be negative")
        result[key] = int(value)
    return result


def parse_new_toxic(body: Any) -> Toxic:
    """POST /proxies/{name}/toxics: stream defaults to downstream, the name to `<type>_<stream>`."""
    fields = _object(body)
    given_stream = _string(fields, "stream", "downstream")
    if given_stream not in STREAMS:
        raise INVALID_STREAM
    stream: Stream = "upstream" if given_stream == "upstream" else "downstream"
    toxic_type = _string(fields, "type", "")
    if toxic_type not in TOXIC_ATTRIBUTES:
        raise INVALID_TOXIC_TYPE
    name = _string(fields, "name", "") or f"{toxic_type}_{stream}"
    attributes = _attributes(toxic_type, fields.get("attributes"), {})
    return Toxic(name, toxic_type, stream, _toxicity(fields, 1.0), attributes)


def parse_toxic_update(current: Toxic, body: Any) -> Toxic:
    """POST/PATCH /proxies/{name}/toxics/{toxic}: attributes and toxicity merge over the current."""
    fields = _object(body)
    attributes = _attributes(current.type, fields.get("attributes"), current.attributes)
    return Toxic(current.name, current.type, current.stream, _toxicity(fields, current.toxicity), attributes)


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts; a bad address is a 400, as Toxiproxy's listen."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise bad_request(f"address {address!r} is not host:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)
