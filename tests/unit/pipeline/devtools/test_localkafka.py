"""The local broker: its generated cluster id is one `kafka-storage format` accepts, and its jars
are fetched once however many test processes ask at once."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

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


def test_processes_fetching_the_broker_at_once_fetch_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cold cache the three test processes start their brokers at once: one runs Maven,
    the others wait for it and use its jars (each deleted the others' half-copied jars)."""
    import shutil
    import subprocess
    import threading
    import time

    from pipeline.devtools import localkafka

    runs: list[str] = []

    def fake_mvn(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        out = Path(argv[-1].removeprefix("-DoutputDirectory="))
        runs.append(str(out))
        out.mkdir(parents=True)
        time.sleep(0.3)  # a download: the others arrive meanwhile
        (out / "kafka.jar").write_text("jar")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/mvn")  # what localkafka calls
    monkeypatch.setattr(subprocess, "run", fake_mvn)
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(
        localkafka.fetch_broker_libs(tmp_path / "cache"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(runs) == 1, runs
    assert len(found) == 3 and len(set(found)) == 1
    assert (found[0] / "kafka.jar").read_text() == "jar" and (found[0] / ".complete").exists()
