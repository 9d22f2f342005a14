"""The local broker's generated cluster id is one `kafka-storage format` accepts."""

from __future__ import annotations

import base64

from pipeline.devtools.localkafka import DEPLOY_DIR, _cluster_id


def test_cluster_ids_never_start_with_a_dash_and_are_uuids() -> None:
    ids = [_cluster_id() for _ in range(20_000)]  # ~1 in 64 raw UUIDs would start with '-'
    assert not [i for i in ids if i.startswith("-")]
    for text in ids:
        assert len(text) == 22
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
    assert len(set(ids)) == len(ids)


def test_the_broker_pom_is_where_the_local_broker_looks() -> None:
    assert (DEPLOY_DIR / "pom.xml").is_file()
    assert (DEPLOY_DIR / "log4j2.yaml").is_file()
