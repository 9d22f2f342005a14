"""callsync's topics: created with the right partitions and retention, or checked if they exist."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from pipeline.config import Settings

__all__ = ["TABLES", "TopicMismatch", "TopicSpec", "changelog_topic", "ensure_topics",
           "topic_specs"]

DAY_MS = 86_400_000
WAIT_SECONDS = 30.0  # a fresh topic is described with its partitions within a second or two
POLL_SECONDS = 0.2
COPARTITIONED = "keyed by tenant, it must match CALLSYNC_TOPICS__PARTITIONS"


class TopicMismatch(SystemExit):
    """A topic is missing or does not fit: start-up stops and says which and why."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]  # every key here is also checked on an existing topic
    partition_reason: str | None  # why the count must be exactly `partitions`; None: any will do


@dataclass(frozen=True)
class _Found:
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t = settings.topics
    p = t.partitions
    compact = {"cleanup.policy": "compact"}

    def delete_after(days: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}

    return [
        TopicSpec(t.calls, p, delete_after(t.calls_retention_days), COPARTITIONED),
        TopicSpec(t.integrations, p, compact, COPARTITIONED),
        TopicSpec(t.mappings, p, compact, COPARTITIONED),
        TopicSpec(t.invalid, p, delete_after(30), None),
        TopicSpec(t.dead_letter, p, delete_after(30), None),
        TopicSpec(t.control, p, delete_after(7), COPARTITIONED),
        TopicSpec(t.results, 1, delete_after(7), "the operator reads its answers from partition 0"),
        *(TopicSpec(changelog_topic(settings, table), p, compact, COPARTITIONED)
          for table in TABLES),
    ]


# The worker's Faust tables (pipeline/app.py). Their changelog topics are made here too, before
# any worker starts: Faust would make each when its worker starts, and a group leader whose
# metadata predates one leaves that table's partitions out of the assignment ("Ignoring missing
# topic") — the next owner of a partition then worked with an empty ledger.
TABLES = ("integrations", "mappings", "rosters", "tenant-state", "ledger")


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


async def ensure_topics(settings: Settings, *, wait_seconds: float = WAIT_SECONDS) -> list[str]:
    """Create what is missing; return the names created. Raise TopicMismatch on a bad fit.

    A topic the controller has just created is not yet in every broker's metadata, so each topic
    is described again until it shows its partitions and configs, for up to `wait_seconds`.
    """
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        specs = topic_specs(settings)
        created = await _create_missing(admin, specs, settings.replication_factor)
        found = await _describe(admin, specs, wait_seconds)
        problems = [line for spec in specs for line in _misfits(spec, found[spec.name])]
        if problems:
            raise TopicMismatch("callsync's topics do not fit the settings:\n"
                                + "\n".join(problems))
        return created
    finally:
        await admin.close()


async def _create_missing(admin: AIOKafkaAdminClient, specs: list[TopicSpec],
                          replication_factor: int) -> list[str]:
    existing = set(await admin.list_topics())
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    response = await admin.create_topics([
        NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config)
        for s in missing])
    created, failed = [], []
    for result in response.to_object()["topic_errors"]:
        error = for_code(result["error_code"])
        if result["error_code"] == 0:
            created.append(result["topic"])
        elif error is not TopicAlreadyExistsError:  # another worker was quicker: checked below
            failed.append(f"  {result['topic']}: {error.__name__} "
                          f"{result.get('error_message') or ''}".rstrip())
    if failed:
        raise TopicMismatch("callsync could not create its topics:\n" + "\n".join(failed))
    return [s.name for s in missing if s.name in created]


async def _describe(admin: AIOKafkaAdminClient, specs: list[TopicSpec],
                    wait_seconds: float) -> dict[str, _Found]:
    deadline = time.monotonic() + wait_seconds
    pending = {s.name: s for s in specs}
    found: dict[str, _Found] = {}
    why: dict[str, str] = {}
    while True:
        partitions, not_yet = await _partition_counts(admin, list(pending))
        why.update(not_yet)
        configs, not_yet = await _configs(admin, [pending[n] for n in partitions])
        why.update(not_yet)
        for name, config in configs.items():
            found[name] = _Found(partitions[name], config)
            del pending[name]
        if not pending:
            return found
        if time.monotonic() >= deadline:
            lines = [f"  {name}: not described with its partitions and configs within "
                     f"{wait_seconds:g} s (last answer: {why.get(name, 'none')})"
                     for name in pending]
            raise TopicMismatch("callsync's topics are not ready:\n" + "\n".join(lines))
        await asyncio.sleep(POLL_SECONDS)


async def _partition_counts(admin: AIOKafkaAdminClient,
                            names: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Topics the broker knows with their partition counts, and why the others are not yet."""
    counts, not_yet = {}, {}
    for topic in await admin.describe_topics(names):
        if topic["error_code"] == 0 and topic["partitions"]:
            counts[topic["topic"]] = len(topic["partitions"])
        else:
            not_yet[topic["topic"]] = f"{for_code(topic['error_code']).__name__}, " \
                                      f"{len(topic['partitions'])} partitions"
    return counts, not_yet


async def _configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec],
                   ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The checked settings of each topic, and why a topic's could not be read yet."""
    if not specs:
        return {}, {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name, configs=dict.fromkeys(s.config))
                 for s in specs]
    configs, not_yet = {}, {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            if resource["error_code"] == 0:
                configs[name] = {_entry_name(e): e["config_value"]
                                 for e in resource["config_entries"]}
            else:
                not_yet[name] = for_code(resource["error_code"]).__name__
    return configs, not_yet


def _entry_name(entry: dict[str, Any]) -> str:
    # aiokafka's DescribeConfigs v0-v2 responses call the entry's name "config_names".
    return str(entry.get("config_names") or entry.get("config_name"))


def _misfits(spec: TopicSpec, found: _Found) -> list[str]:
    problems = []
    if spec.partition_reason and found.partitions != spec.partitions:
        problems.append(f"  {spec.name}: partitions: expected {spec.partitions}, found "
                        f"{found.partitions} ({spec.partition_reason})")
    for key, expected in spec.config.items():
        value = found.config.get(key)
        if not _same(key, expected, value):
            problems.append(f"  {spec.name}: {key}: expected {_shown(key, expected)}, "
                            f"found {_shown(key, value)}")
    return problems


def _shown(key: str, value: str | None) -> str:
    if key == "retention.ms" and value is not None and value.lstrip("-").isdigit():
        ms = int(value)
        return f"{value} ({ms / DAY_MS:g} d)" if ms >= 0 else f"{value} (forever)"
    return str(value)


def _same(key: str, expected: str, found: str | None) -> bool:
    if found is None:
        return False
    if key == "cleanup.policy":  # a list: "compact,delete" and "delete,compact" are one policy
        return {p.strip() for p in expected.split(",")} == {p.strip() for p in found.split(",")}
    return expected.strip() == found.strip()
