"""Creating callsync's topics on a real broker, and refusing existing ones that do not fit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.config import KafkaSettings, Settings, TopicSettings
from pipeline.topics import DAY_MS, TopicMismatch, ensure_topics, topic_specs

pytestmark = pytest.mark.kafka


def settings_for(bootstrap: str) -> Settings:
    """Settings whose topic names (the seven and the tables' changelogs) are new on the broker."""
    p = f"t-{uuid.uuid4().hex[:12]}"
    return Settings(app_id=p, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                    topics=TopicSettings(
        calls=f"{p}.calls", integrations=f"{p}.integrations", mappings=f"{p}.mappings",
        invalid=f"{p}.invalid", dead_letter=f"{p}.dead-letter", control=f"{p}.control",
        results=f"{p}.results"))


async def describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Each topic's partition count and its cleanup policy and retention, as the broker says."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        keys = {"cleanup.policy": None, "retention.ms": None}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs=keys) for name in names])
        configs = {r["resource_name"]: {e["config_names"]: e["config_value"]
                                        for e in r["config_entries"]}
                   for resp in responses for r in resp.to_object()["resources"]}
        return {name: (counts[name], configs[name]) for name in names}
    finally:
        await admin.close()


async def create(bootstrap: str, name: str, partitions: int, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()


async def test_topics_are_created_from_nothing_every_time(kafka_bootstrap: str) -> None:
    for _ in range(20):
        settings = settings_for(kafka_bootstrap)
        specs = topic_specs(settings)

        created = await ensure_topics(settings)

        assert sorted(created) == sorted(s.name for s in specs)
        found = await describe(kafka_bootstrap, [s.name for s in specs])
        for spec in specs:
            partitions, config = found[spec.name]
            assert partitions == spec.partitions, spec.name
            assert {k: config[k] for k in spec.config} == spec.config, spec.name
    assert await ensure_topics(settings) == []  # all there and fitting: nothing to do


@pytest.mark.parametrize(("topic", "partitions", "config", "expected"), [
    ("calls", 6, {"cleanup.policy": "compact"},
     "cleanup.policy: expected delete, found compact"),
    ("calls", 6, {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
     f"retention.ms: expected {7 * DAY_MS} (7 d), found {DAY_MS} (1 d)"),
    ("integrations", 2, {"cleanup.policy": "compact"}, "partitions: expected 6, found 2"),
    ("mappings", 6, {"cleanup.policy": "delete"},
     "cleanup.policy: expected compact, found delete"),
    ("results", 3, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
     "partitions: expected 1, found 3"),
])
async def test_an_existing_topic_that_does_not_fit_is_refused_by_name(
        kafka_bootstrap: str, topic: str, partitions: int, config: dict[str, str],
        expected: str) -> None:
    settings = settings_for(kafka_bootstrap)
    name = getattr(settings.topics, topic)
    await create(kafka_bootstrap, name, partitions, config)

    with pytest.raises(TopicMismatch) as refused:
        await ensure_topics(settings)

    assert isinstance(refused.value, SystemExit)
    assert f"{name}: {expected}" in str(refused.value)
    assert str(refused.value).count("expected") == 1  # the others were created and fit


async def test_a_dead_letter_topic_with_other_partitions_is_accepted(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap)
    await create(kafka_bootstrap, settings.topics.dead_letter, 2,
                 {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)})

    created = await ensure_topics(settings)

    specs = topic_specs(settings)
    assert settings.topics.dead_letter not in created and len(created) == len(specs) - 1


async def test_a_topic_the_broker_never_describes_is_named_after_the_wait(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(kafka_bootstrap)
    hidden = settings.topics.control
    describe_topics = AIOKafkaAdminClient.describe_topics

    async def lagging(self: AIOKafkaAdminClient, topics: list[str]) -> list[dict[str, Any]]:
        described: list[dict[str, Any]] = await describe_topics(self, topics)
        return [{**t, "error_code": 3, "partitions": []} if t["topic"] == hidden else t
                for t in described]  # 3: UNKNOWN_TOPIC_OR_PARTITION, as a lagging broker says

    monkeypatch.setattr(AIOKafkaAdminClient, "describe_topics", lagging)
    with pytest.raises(TopicMismatch) as refused:
        await ensure_topics(settings, wait_seconds=1.0)

    message = str(refused.value)
    assert f"{hidden}: not described with its partitions and configs within 1 s" in message
    assert "UnknownTopicOrPartitionError" in message
    assert message.count("not described") == 1
