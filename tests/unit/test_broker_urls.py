"""RABBIT_URL and RABBIT_VHOST: which URLs the service processes connect to."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.broker.connection import node_urls
from service.config import Settings, describe_error

pytestmark = pytest.mark.unit

NODE = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.mark.parametrize(
    ("rabbit_url", "expected"),
    [
        (NODE, [NODE]),
        ("amqp://u:p@a:1/x?heartbeat=5", ["amqp://u:p@a:1/x?heartbeat=5"]),
        ("amqp://a:1/, amqps://b:2/,amqp://c:3/ ", ["amqp://a:1/", "amqps://b:2/", "amqp://c:3/"]),
    ],
)
def test_without_a_vhost_each_url_keeps_its_own(rabbit_url: str, expected: list[str]) -> None:
    assert node_urls(rabbit_url) == expected


@pytest.mark.parametrize(
    ("vhost", "path"),
    [("ast", "/ast"), ("/", "/%2F"), ("team/ast", "/team%2Fast"), ("a b", "/a%20b")],
)
def test_the_vhost_replaces_the_path_of_every_node(vhost: str, path: str) -> None:
    urls = node_urls("amqp://u:p@a:1/, amqp://u:p@b:2/old?heartbeat=5", vhost)
    assert urls == [f"amqp://u:p@a:1{path}", f"amqp://u:p@b:2{path}?heartbeat=5"]


@pytest.mark.parametrize("rabbit_url", ["http://broker", f"{NODE},http://broker", f"{NODE},"])
def test_every_node_url_must_be_amqp(rabbit_url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(rabbit_url=rabbit_url)
    assert describe_error(caught.value).startswith("invalid configuration: RABBIT_URL:")


def test_a_cluster_of_urls_is_a_valid_setting() -> None:
    assert Settings(rabbit_url=f"{NODE},amqp://guest:guest@127.0.0.1:5673/").rabbit_url.count(",") == 1
