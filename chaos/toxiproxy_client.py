"""A small typed client of Toxiproxy 2.x's HTTP API, for the harness's own use.

It talks to any Toxiproxy: the one in `chaos.proxy`, or a real toxiproxy-server named by a
target file's `[toxiproxy] url`. (The harness does not import `toxiproxy-python`: importing it
beside Locust raised RecursionError, and it covers only part of the API.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx


class ToxiproxyError(Exception):
    """An answer other than success, with Toxiproxy's status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"toxiproxy answered {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ToxicInfo:
        return cls(
            name=str(body["name"]),
            type=str(body["type"]),
            stream=str(body["stream"]),
            toxicity=float(body["toxicity"]),
            attributes={str(k): int(v) for k, v in dict(body.get("attributes") or {}).items()},
        )


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ProxyInfo:
        return cls(
            name=str(body["name"]),
            listen=str(body["listen"]),
            upstream=str(body["upstream"]),
            enabled=bool(body["enabled"]),
            toxics=tuple(ToxicInfo.from_json(t) for t in body.get("toxics") or ()),
        )

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class ProxySpec:
    """A proxy to create or keep with POST /populate."""

    name: str
    upstream: str
    listen: str = "127.0.0.1:0"
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "upstream": self.upstream, "listen": self.listen, "enabled": self.enabled}


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


class ToxiproxyClient:
    """One method per endpoint of Toxiproxy's README; errors raise `ToxiproxyError`."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                message = str(response.json().get("error", response.text))
            except (ValueError, AttributeError):
                message = response.text
            raise ToxiproxyError(response.status_code, message)
        return response.json() if response.content and response.status_code != 204 else None

    def version(self) -> str:
        return str(self._call("GET", "/version")["version"])

    def proxies(self) -> dict[str, ProxyInfo]:
        return {name: ProxyInfo.from_json(body) for name, body in self._call("GET", "/proxies").items()}

    def proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("GET", _path("proxies", name)))

    def create_proxy(self, spec: ProxySpec) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("POST", "/proxies", spec.to_json()))

    def populate(self, specs: Iterable[ProxySpec]) -> list[ProxyInfo]:
        body = self._call("POST", "/populate", [spec.to_json() for spec in specs])
        return [ProxyInfo.from_json(p) for p in body["proxies"]]

    def update_proxy(self, name: str, **fields: str | bool) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("POST", _path("proxies", name), fields))

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        return self.update_proxy(name, enabled=enabled)

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", _path("proxies", name))

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._call("GET", _path("proxies", proxy, "toxics"))]

    def add_toxic(
        self,
        proxy: str,
        toxic_type: str,
        attributes: Mapping[str, int],
        *,
        stream: str = "downstream",
        name: str | None = None,
        toxicity: float = 1.0,
    ) -> ToxicInfo:
        body = {
            "name": name or f"{toxic_type}_{stream}",
            "type": toxic_type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes),
        }
        return ToxicInfo.from_json(self._call("POST", _path("proxies", proxy, "toxics"), body))

    def toxic(self, proxy: str, name: str) -> ToxicInfo:
        return ToxicInfo.from_json(self._call("GET", _path("proxies", proxy, "toxics", name)))

    def update_toxic(
        self, proxy: str, name: str, attributes: Mapping[str, int], toxicity: float | None = None
    ) -> ToxicInfo:
        body: dict[str, Any] = {"attributes": dict(attributes)}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(self._call("POST", _path("proxies", proxy, "toxics", name), body))

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", _path("proxies", proxy, "toxics", name))

    def reset(self) -> None:
        self._call("POST", "/reset")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
