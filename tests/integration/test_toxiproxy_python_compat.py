"""toxiproxy-python (a client nobody here wrote) drives the proxy through every call it has.

This module is the only place that imports `toxiproxy`: imported beside Locust it raised
RecursionError (gevent patching), so the harness uses `chaos.toxiproxy_client` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists

from chaos.proxy import ProxyServerThread
from tests.proxy_upstreams import Upstreams, connect, round_trip_s

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with Upstreams() as servers:
        yield servers


@pytest.fixture
def server() -> Iterator[toxiproxy.Toxiproxy]:
    with ProxyServerThread() as thread:
        client = toxiproxy.Toxiproxy()
        client.update_api_consumer("127.0.0.1", thread.server.port)
        yield client
        client.destroy_all()


def port_of(proxy: toxiproxy.proxy.Proxy) -> int:
    return int(proxy.listen.rpartition(":")[2])


def test_running_version_create_and_list(server: toxiproxy.Toxiproxy, upstreams: Upstreams) -> None:
    assert server.running()
    assert b'"version": "2.' in server.version()
    proxy = server.create(upstream=upstreams.echo, name="echo")
    assert proxy.enabled
    assert port_of(proxy) > 0
    assert set(server.proxies()) == {"echo"}
    assert server.get_proxy("echo").upstream == upstreams.echo
    with pytest.raises(ProxyExists):
        server.create(upstream=upstreams.echo, name="echo")
    with connect(port_of(proxy)) as sock:
        assert round_trip_s(sock) < 0.5


def test_server_answers_409_and_404_the_client_understands(
    server: toxiproxy.Toxiproxy, upstreams: Upstreams
) -> None:
    server.create(upstream=upstreams.echo, name="echo")
    with pytest.raises(ProxyExists):
        APIConsumer.post("/proxies", json={"name": "echo", "upstream": upstreams.echo})
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/missing")


def test_toxics_add_list_get_and_destroy(server: toxiproxy.Toxiproxy, upstreams: Upstreams) -> None:
    proxy = server.create(upstream=upstreams.echo, name="echo")
    proxy.add_toxic(type="latency", attributes={"latency": 120})
    proxy.add_toxic(type="bandwidth", stream="upstream", name="slow", toxicity=0.5, attributes={"rate": 9})
    assert set(proxy.toxics()) == {"latency_downstream", "slow"}
    slow = proxy.get_toxic("slow")
    assert (slow.type, slow.stream, slow.toxicity, slow.attributes) == (
        "bandwidth",
        "upstream",
        0.5,
        {"rate": 9},
    )
    with connect(port_of(proxy)) as sock:
        assert round_trip_s(sock) >= 0.1
    assert proxy.destroy_toxic("latency_downstream")
    assert proxy.destroy_toxic("slow")
    assert proxy.toxics() == {}


def test_down_disables_then_enables(server: toxiproxy.Toxiproxy, upstreams: Upstreams) -> None:
    proxy = server.create(upstream=upstreams.echo, name="echo")
    with proxy.down():
        assert server.get_proxy("echo").enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(port_of(proxy), timeout_s=1.0).close()
    assert server.get_proxy("echo").enabled is True
    with connect(port_of(proxy)) as sock:
        assert round_trip_s(sock) < 0.5


def test_populate_reset_and_destroy(server: toxiproxy.Toxiproxy, upstreams: Upstreams) -> None:
    created = server.populate([{"name": "a", "upstream": upstreams.echo, "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["a"]
    proxy = server.get_proxy("a")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    proxy.disable()
    assert server.reset()
    assert server.get_proxy("a").enabled
    assert proxy.toxics() == {}
    assert server.destroy(proxy)
    assert server.proxies() == {}
