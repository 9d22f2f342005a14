"""callsync's topics: created with the right partitions and retention, or checked if they exist."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.config import Settings

__all__ = ["TopicMismatch", "TopicSpec", "ensure_topics", "topic_specs"]

DAY_MS = 86_400_000


class TopicMismatch(SystemExit):
    """An existing topic does not fit: start-up stops and says which and why."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    copartitioned: bool  # keyed by tenant: must match the call topic's partition count


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    p = t.partitions
    keep = {"cleanup.policy": "delete"}
    return [
        TopicSpec(t.calls, p, {**keep, "retention.ms": str(t.calls_retention_days * DAY_MS)},
                  True),
        TopicSpec(t.integrations, p, {"cleanup.policy": "compact"}, True),
        TopicSpec(t.mappings, p, {"cleanup.policy": "compact"}, True),
        TopicSpec(t.invalid, p, {**keep, "retention.ms": str(30 * DAY_MS)}, False),
        TopicSpec(t.dead_letter, p, {**keep, "retention.ms": str(30 * DAY_MS)}, False),
        TopicSpec(t.control, p, {**keep, "retention.ms": str(7 * DAY_MS)}, True),
        TopicSpec(t.results, 1, {**keep, "retention.ms": str(7 * DAY_MS)}, False),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create what is missing; return the names created. Raise TopicMismatch on a bad fit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics([NewTopic(spec.name, spec.partitions,
                                                    settings.replication_factor,
                                                    topic_configs=spec.config)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        described = await admin.describe_topics([s.name for s in specs])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        problems = [f"  {s.name}: {counts.get(s.name)} partitions, expected {s.partitions} "
                    "(keyed by tenant, it must match CALLSYNC_TOPICS__PARTITIONS)"
                    for s in specs if s.copartitioned and counts.get(s.name) != s.partitions]
        if problems:
            raise TopicMismatch("callsync's topics do not fit the settings:\n"
                                + "\n".join(problems))
        return created
    finally:
        await admin.close()
