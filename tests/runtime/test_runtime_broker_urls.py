"""One broker URL naming several RabbitMQ nodes, PostgreSQL-style: a URL per node, in order."""

import pytest

from runtime.broker_urls import RECONNECT_SECONDS, BrokerUrlError, broker_nodes


def test_each_host_becomes_a_url_with_the_credentials_vhost_and_query() -> None:
    nodes = broker_nodes("amqps://kiln:s%40cret@n1:5671,n2,[::1]:5672/prod?heartbeat=30")

    assert [str(url) for url in nodes.urls] == [
        "amqps://kiln:s%40cret@n1:5671/prod?heartbeat=30",
        "amqps://kiln:s%40cret@n2/prod?heartbeat=30",
        "amqps://kiln:s%40cret@[::1]:5672/prod?heartbeat=30",
    ]
    assert nodes.urls[1].password == "s@cret"
    assert nodes.reconnect_seconds == RECONNECT_SECONDS


def test_one_host_is_one_node() -> None:
    nodes = broker_nodes("amqp://guest:guest@127.0.0.1:5672/")

    assert [str(url) for url in nodes.urls] == ["amqp://guest:guest@127.0.0.1:5672/"]


def test_the_reconnect_interval_is_kilns_and_left_out_of_the_node_urls() -> None:
    nodes = broker_nodes("amqp://h1,h2/v?reconnect_interval=0.2&heartbeat=5")

    assert nodes.reconnect_seconds == 0.2
    assert [str(url) for url in nodes.urls] == [
        "amqp://h1/v?heartbeat=5",
        "amqp://h2/v?heartbeat=5",
    ]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://h1/", "amqp://"),
        ("amqp://guest:guest@h1:5672,/", "every node needs a host"),
        ("amqp:///", "every node needs a host"),
        ("amqp://h1,h2:port/", "cannot parse"),
        ("amqp://h1/?reconnect_interval=0", "reconnect_interval"),
        ("amqp://h1/?reconnect_interval=soon", "reconnect_interval"),
    ],
)
def test_malformed_urls_are_refused_saying_why(url: str, says: str) -> None:
    with pytest.raises(BrokerUrlError, match=says):
        broker_nodes(url)


def test_a_refusal_does_not_repeat_the_password() -> None:
    with pytest.raises(BrokerUrlError) as refused:
        broker_nodes("amqp://kiln:hunter2@h1:99999/")

    assert "hunter2" not in str(refused.value)


def test_a_query_without_a_path_belongs_to_every_node() -> None:
    nodes = broker_nodes("amqps://g:g@h1,h2?reconnect_interval=5&cafile=/ca.pem")

    assert nodes.reconnect_seconds == 5
    assert [str(url) for url in nodes.urls] == [
        "amqps://g:g@h1/?cafile=/ca.pem",
        "amqps://g:g@h2/?cafile=/ca.pem",
    ]
