"""Find or start the Kafka broker that tests, the demo and benchmarks run against."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from pipeline.devtools.localkafka import LocalKafka

__all__ = ["BROKER_ENV", "docker_engine_answers", "kafka_broker"]

BROKER_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_engine_answers() -> bool:
    """Ask the engine's /_ping (DOCKER_HOST or the default socket); a client alone is not enough."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rpartition(":")
            sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield bootstrap servers: $KAFKA_BOOTSTRAP_SERVERS, else testcontainers, else our own."""
    named = os.environ.get(BROKER_ENV)
    if named:
        yield named
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield str(container.get_bootstrap_server())
        return
    with LocalKafka() as broker:
        yield broker.bootstrap_servers
