"""The pure parts of routing a stack's links through the proxy: URL rewriting, link names, and
the target file's `[toxiproxy]` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.stack.base import StackEndpoints, StackError, load_target, render_target_toml
from harness.stack.links import Link, host_port_of, link_servers, node_urls, proxy_requested, via_proxy

pytestmark = pytest.mark.unit


def test_via_proxy_keeps_credentials_path_and_query() -> None:
    assert via_proxy("postgresql://ast:pw@127.0.0.1:5432/ast?sslmode=disable", 6000) == (
        "postgresql://ast:pw@127.0.0.1:6000/ast?sslmode=disable"
    )
    assert via_proxy("amqp://guest:guest@localhost:5672/", 7000) == "amqp://guest:guest@127.0.0.1:7000/"
    assert via_proxy("postgresql://127.0.0.1:5432/ast", 1) == "postgresql://127.0.0.1:1/ast"


def test_a_cluster_gets_one_link_per_node() -> None:
    urls = node_urls("amqp://g:g@127.0.0.1:1/, amqp://g:g@127.0.0.1:2/,amqp://g:g@127.0.0.1:3/")
    assert urls == ["amqp://g:g@127.0.0.1:1/", "amqp://g:g@127.0.0.1:2/", "amqp://g:g@127.0.0.1:3/"]
    assert link_servers("rabbitmq", 3) == ["rabbitmq-0", "rabbitmq-1", "rabbitmq-2"]
    assert link_servers("rabbitmq", 1) == ["rabbitmq"]


def test_host_port_of_needs_both() -> None:
    assert host_port_of("amqp://guest:guest@127.0.0.1:5672/") == "127.0.0.1:5672"
    with pytest.raises(StackError):
        host_port_of("postgresql:///ast")


def test_a_link_is_named_client_dash_server() -> None:
    link = Link("worker-0", "postgres", "127.0.0.1:5432", 6000)
    assert link.name == "worker-0-postgres"
    assert link.to_json() == {
        "name": "worker-0-postgres",
        "upstream": "127.0.0.1:5432",
        "listen": "127.0.0.1:6000",
        "enabled": True,
    }


def test_proxy_requested_by_env() -> None:
    assert proxy_requested({"HARNESS_PROXY": "1"})
    assert not proxy_requested({"HARNESS_PROXY": "0"})
    assert not proxy_requested({})


def test_the_target_file_lists_the_proxies(tmp_path: Path) -> None:
    endpoints = StackEndpoints(
        api_url="http://127.0.0.1:1",
        postgres_dsn="postgresql://ast@127.0.0.1:2/ast",
        amqp_url="amqp://guest:guest@127.0.0.1:3/",
        management_url="http://guest:guest@127.0.0.1:4/",
        toxiproxy_url="http://127.0.0.1:8474",
        toxiproxy_proxies=("api-postgres", "worker-0-rabbitmq"),
    )
    path = tmp_path / "target.toml"
    path.write_text(render_target_toml(endpoints))
    loaded = load_target(path)
    assert loaded.toxiproxy_url == "http://127.0.0.1:8474"
    assert loaded.toxiproxy_proxies == ("api-postgres", "worker-0-rabbitmq")
    path.write_text(render_target_toml(StackEndpoints("a", "b", "c", "d")))
    assert load_target(path).toxiproxy_proxies == ()
