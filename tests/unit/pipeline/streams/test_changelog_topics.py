"""create-topics makes the tables' changelog topics too, named as Faust names them."""

from __future__ import annotations

from pipeline.app import app, settings
from pipeline.topics import COPARTITIONED, topic_specs


def test_every_table_changelog_is_made_before_a_worker_starts() -> None:
    """A group leader whose metadata predates a changelog topic leaves that table out of the
    assignment: the next owner of a partition would work with an empty ledger. So every
    table's changelog is among the topics made before a worker starts, co-partitioned."""
    changelogs = {table.changelog_topic.get_topic_name(): table
                  for table in app.tables.values()}
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert changelogs and set(changelogs) <= set(specs)
    for name, table in changelogs.items():
        spec = specs[name]
        assert spec.partitions == table.partitions == settings.topics.partitions, name
        assert spec.partition_reason == COPARTITIONED
        assert spec.config == {"cleanup.policy": "compact"}, name


def test_no_worker_keeps_standby_copies_of_tables() -> None:
    """faust-streaming 0.15.3's recovery can seek a standby partition to offset None and crash
    the worker in a rebalance (the long fault suite's rebalance lost a worker so): no standbys,
    so no changelog partition is ever recovered as one."""
    assert app.conf.table_standby_replicas == 0
    assert app.assignor.replicas == 0
