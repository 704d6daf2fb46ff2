"""The proxy's pure parts: request bodies to proxies and toxics, toxic arithmetic, HTTP framing."""

from __future__ import annotations

import asyncio
import random

import pytest

from chaos.proxy import toxics as tx
from chaos.proxy.http import Response, encode_response, read_request
from chaos.proxy.model import (
    ApiError,
    ProxyConfig,
    Toxic,
    parse_new_proxy,
    parse_new_toxic,
    parse_proxy_update,
    parse_toxic_update,
    split_host_port,
)

pytestmark = pytest.mark.unit


def test_a_new_proxy_needs_name_and_upstream_and_listens_on_loopback_by_default() -> None:
    assert parse_new_proxy({"name": "db", "upstream": "h:1"}) == ProxyConfig("db", "127.0.0.1:0", "h:1", True)
    for body in ({"upstream": "h:1"}, {"name": "db"}, {"name": "db", "upstream": "h:1", "enabled": "no"}, []):
        with pytest.raises(ApiError) as error:
            parse_new_proxy(body)
        assert error.value.status == 400


def test_a_proxy_update_keeps_what_it_does_not_name() -> None:
    current = ProxyConfig("db", "127.0.0.1:5", "h:1")
    assert parse_proxy_update(current, {"enabled": False}) == ProxyConfig("db", "127.0.0.1:5", "h:1", False)
    assert parse_proxy_update(current, {"name": "other"}).name == "db"


def test_a_new_toxic_gets_toxiproxys_defaults_and_every_attribute() -> None:
    toxic = parse_new_toxic({"type": "slicer", "attributes": {"average_size": 7}})
    assert toxic.to_json() == {
        "name": "slicer_downstream",
        "type": "slicer",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"average_size": 7, "size_variation": 0, "delay": 0},
    }


@pytest.mark.parametrize(
    "body",
    [
        {"type": "warp"},
        {"type": "latency", "stream": "both"},
        {"type": "latency", "toxicity": 2},
        {"type": "latency", "attributes": {"latency": -1}},
        {"type": "latency", "attributes": {"latency": "fast"}},
    ],
)
def test_a_bad_toxic_is_a_400(body: dict[str, object]) -> None:
    with pytest.raises(ApiError) as error:
        parse_new_toxic(body)
    assert error.value.status == 400


def test_a_toxic_update_merges_attributes_and_gets_a_new_revision() -> None:
    current = parse_new_toxic({"type": "latency", "attributes": {"latency": 10, "jitter": 2}})
    updated = parse_toxic_update(current, {"attributes": {"jitter": 5}, "toxicity": 0.5})
    assert dict(updated.attributes) == {"latency": 10, "jitter": 5}
    assert updated.toxicity == 0.5
    assert updated.revision != current.revision


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:5") == ("::1", 5)
    assert split_host_port(":9") == ("0.0.0.0", 9)
    with pytest.raises(ApiError):
        split_host_port("nohost")


def toxic(toxic_type: str, **attributes: int) -> Toxic:
    return Toxic(f"{toxic_type}_x", toxic_type, "downstream", 1.0, attributes)


def test_latency_sums_its_toxics_and_jitter_stays_in_bounds() -> None:
    rng = random.Random(1)
    assert tx.latency_s([toxic("latency", latency=100), toxic("latency", latency=50)], rng) == 0.15
    samples = [tx.latency_s([toxic("latency", latency=100, jitter=30)], rng) for _ in range(500)]
    assert 0.07 <= min(samples) < 0.08
    assert 0.12 < max(samples) <= 0.13


def test_bandwidth_takes_the_tightest_rate_and_zero_means_unlimited() -> None:
    assert tx.bandwidth_bytes_per_s([toxic("bandwidth", rate=0)]) is None
    assert tx.bandwidth_bytes_per_s([toxic("bandwidth", rate=50), toxic("bandwidth", rate=20)]) == 20_000


def test_slices_and_paces_cover_every_byte() -> None:
    rng = random.Random(2)
    sizes = list(tx.slice_sizes(1000, 10, 4, rng))
    assert sum(sizes) == 1000
    assert all(1 <= s <= 14 for s in sizes)
    assert list(tx.slice_sizes(5, 0, 0, rng)) == [5]
    assert list(tx.pace_sizes(2500, 50_000)) == [1000, 1000, 500]


def test_limit_remaining_never_goes_negative() -> None:
    assert tx.limit_remaining(toxic("limit_data", bytes=10), 4) == 6
    assert tx.limit_remaining(toxic("limit_data", bytes=10), 40) == 0


async def parse(raw: bytes) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await read_request(reader)


async def test_requests_with_length_or_chunks_and_keep_alive() -> None:
    parsed = await parse(b"POST /proxies?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert parsed is not None
    request, keep_alive = parsed  # type: ignore[misc]
    assert (request.method, request.path, request.body, keep_alive) == ("POST", "/proxies", b"{}", True)
    chunked = b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    request, keep_alive = await parse(chunked)  # type: ignore[misc]
    assert (request.body, keep_alive) == (b"abc", False)
    assert await parse(b"") is None


def test_a_204_has_no_body_or_length() -> None:
    raw = encode_response(Response(204, b"ignored"), keep_alive=True)
    assert raw.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in raw
    assert raw.endswith(b"\r\n\r\n")
