"""connect_bus picks the transport from the URL scheme."""

import pytest

from bus import MemoryBus, RabbitBus, connect_bus


def test_memory_url_gives_the_in_process_bus() -> None:
    assert isinstance(connect_bus("memory://"), MemoryBus)


@pytest.mark.parametrize(
    "url", ["amqp://guest:guest@127.0.0.1:5672/", "amqps://user:secret@broker.example/kiln"]
)
def test_amqp_urls_give_rabbitmq(url: str) -> None:
    bus = connect_bus(url)

    assert isinstance(bus, RabbitBus)
    assert not bus.connected


@pytest.mark.parametrize(
    ("url", "scheme"), [("redis://localhost", "redis"), ("localhost:5672", "localhost"), ("", "")]
)
def test_other_schemes_are_refused(url: str, scheme: str) -> None:
    with pytest.raises(ValueError, match=f"scheme {scheme!r}"):
        connect_bus(url)
