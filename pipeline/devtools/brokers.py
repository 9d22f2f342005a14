"""Find or start the Kafka broker that tests, the demo and benchmarks run against."""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator

from pipeline.devtools.localkafka import LocalKafka

__all__ = ["BROKER_ENV", "docker_engine_answers", "kafka_broker"]

BROKER_ENV = "KAFKA_BOOTSTRAP_SERVERS"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def docker_engine_answers() -> bool:
    """Ask the engine (DOCKER_HOST, else the default socket) for /_ping with the docker SDK, which
    testcontainers brings; a client or a socket path alone is not enough."""
    try:
        import docker
    except ImportError:  # no SDK means no testcontainers either
        return False
    with warnings.catch_warnings():
        # Where nothing listens, a failed connect leaves its socket to the collector (the SDK
        # does not close it): collected here, where its ResourceWarning is expected.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)  # asks the engine for its API version already
        except docker.errors.DockerException:
            client = None
        gc.collect()
    if client is None:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):  # requests' errors are OSErrors
        return False
    finally:
        client.close()


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
