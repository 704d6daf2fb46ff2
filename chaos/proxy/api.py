"""Toxiproxy 2.x's HTTP API over a `ProxyCollection`: the routes, bodies and status codes of
Toxiproxy's README (201 on a created proxy and on /populate, 200 on a created toxic, 204 on a
delete and on /reset, 404 unknown, 409 duplicate, 400 bad body, 403 for a browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from chaos.proxy.http import Request, Response
from chaos.proxy.model import (
    VERSION,
    ApiError,
    bad_request,
    parse_new_proxy,
    parse_new_toxic,
    parse_proxy_update,
    parse_toxic_update,
)
from chaos.proxy.proxy import PopulateError, ProxyCollection

Route = Callable[[Request, dict[str, str]], Awaitable[Response]]


def json_response(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode())


def error_response(error: ApiError) -> Response:
    return json_response(error.status, error.body())


def request_json(request: Request) -> Any:
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(str(exc) or "EOF") from exc


class ToxiproxyApi:
    """Routes a request to the collection and turns the outcome into Toxiproxy's answer."""

    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection
        proxy, toxic = r"/proxies/(?P<proxy>[^/]+)", r"/toxics/(?P<toxic>[^/]+)"
        table: list[tuple[str, tuple[str, ...], Route]] = [
            ("/reset", ("POST",), self.reset),
            ("/version", ("GET",), self.version),
            ("/populate", ("POST",), self.populate),
            ("/proxies", ("GET",), self.list_proxies),
            ("/proxies", ("POST",), self.create_proxy),
            (proxy, ("GET",), self.show_proxy),
            (proxy, ("POST", "PATCH"), self.update_proxy),
            (proxy, ("DELETE",), self.delete_proxy),
            (proxy + "/toxics", ("GET",), self.list_toxics),
            (proxy + "/toxics", ("POST",), self.create_toxic),
            (proxy + toxic, ("GET",), self.show_toxic),
            (proxy + toxic, ("POST", "PATCH"), self.update_toxic),
            (proxy + toxic, ("DELETE",), self.delete_toxic),
        ]
        self._routes = [(re.compile(pattern + "/?"), methods, route) for pattern, methods, route in table]

    async def __call__(self, request: Request) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(403, b"User agent not allowed\n", "text/plain; charset=utf-8")
        path_matched = False
        for pattern, methods, route in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            if request.method in methods:
                params = {key: unquote(value) for key, value in match.groupdict().items()}
                try:
                    return await route(request, params)
                except ApiError as exc:
                    return error_response(exc)
        if path_matched:
            return Response(405, b"", "text/plain; charset=utf-8")
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")

    async def reset(self, request: Request, params: dict[str, str]) -> Response:
        await self.collection.reset()
        return Response(204)

    async def version(self, request: Request, params: dict[str, str]) -> Response:
        return Response(
            200, json.dumps({"version": VERSION}).encode() + b"\n", "application/json;charset=utf-8"
        )

    async def list_proxies(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, {proxy.config.name: proxy.to_json() for proxy in self.collection.all()})

    async def create_proxy(self, request: Request, params: dict[str, str]) -> Response:
        proxy = await self.collection.add(parse_new_proxy(request_json(request)))
        return json_response(201, proxy.to_json())

    async def populate(self, request: Request, params: dict[str, str]) -> Response:
        body = request_json(request)
        if not isinstance(body, list):
            raise bad_request("expected a JSON array of proxies")
        configs = [parse_new_proxy(item) for item in body]
        if len({config.name for config in configs}) != len(configs):
            raise bad_request("a proxy name appears twice")
        try:
            proxies = await self.collection.populate(configs)
        except PopulateError as exc:
            done = [proxy.to_json() for proxy in exc.done]
            return json_response(exc.error.status, {**exc.error.body(), "proxies": done})
        return json_response(201, {"proxies": [proxy.to_json() for proxy in proxies]})

    async def show_proxy(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, self.collection.get(params["proxy"]).to_json())

    async def update_proxy(self, request: Request, params: dict[str, str]) -> Response:
        current = self.collection.get(params["proxy"]).config
        proxy = await self.collection.update(current.name, parse_proxy_update(current, request_json(request)))
        return json_response(200, proxy.to_json())

    async def delete_proxy(self, request: Request, params: dict[str, str]) -> Response:
        await self.collection.remove(params["proxy"])
        return Response(204)

    async def list_toxics(self, request: Request, params: dict[str, str]) -> Response:
        toxics = self.collection.get(params["proxy"]).toxic_list()
        return json_response(200, [toxic.to_json() for toxic in toxics])

    async def create_toxic(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        toxic = parse_new_toxic(request_json(request))
        proxy.add_toxic(toxic)
        return json_response(200, toxic.to_json())

    async def show_toxic(self, request: Request, params: dict[str, str]) -> Response:
        toxic = self.collection.get(params["proxy"]).get_toxic(params["toxic"])
        return json_response(200, toxic.to_json())

    async def update_toxic(self, request: Request, params: dict[str, str]) -> Response:
        proxy = self.collection.get(params["proxy"])
        toxic = parse_toxic_update(proxy.get_toxic(params["toxic"]), request_json(request))
        proxy.replace_toxic(toxic)
        return json_response(200, toxic.to_json())

    async def delete_toxic(self, request: Request, params: dict[str, str]) -> Response:
        self.collection.get(params["proxy"]).remove_toxic(params["toxic"])
        return Response(204)
