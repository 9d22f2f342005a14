"""Fixtures: a real Kafka broker and the retailCRM double, started by the tests themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.devtools.brokers import kafka_broker
from pipeline.devtools.crmdouble.admin import KeySpec, PortalSpec, UserSpec, seed_portal
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Portal


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as servers:
        yield servers


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def crm_double() -> AsyncIterator[CRMDouble]:
    double = CRMDouble()
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
def portal(crm_double: CRMDouble) -> Portal:
    """A portal 'acme' with a full key 'acme-key', two managers and a director."""
    return seed_portal(crm_double.state, PortalSpec(
        name="acme", timezone="Europe/Kyiv", keys=[KeySpec(key="acme-key", label="acme")],
        users=[UserSpec(id=27, firstName="Olena", email="olena@acme.test"),
               UserSpec(id=28, firstName="Petro", email="petro@acme.test"),
               UserSpec(id=29, firstName="Iryna", groups=["director"]),
               UserSpec(id=30, firstName="Taras", active=False)],
    ))
