"""A real single-node Apache Kafka broker (KRaft) fetched from Maven Central and run on loopback."""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["BrokerError", "LocalKafka", "fetch_broker_libs", "free_port"]

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
DEFAULT_CACHE = Path(os.environ.get("CALLSYNC_CACHE", Path.home() / ".cache" / "callsync"))
READY_LINE = "Kafka Server started"


class BrokerError(RuntimeError):
    """The broker could not be fetched, formatted or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch_broker_libs(cache: Path = DEFAULT_CACHE) -> Path:
    """Copy the broker's jars (pinned in deploy/kafka/pom.xml) into the cache, once per pom.

    The test processes (pytest-xdist) each start a broker at once: on a cold cache, one fetches
    while the others wait on a lock for it, instead of each deleting the others' half-copied
    jars."""
    pom = DEPLOY_DIR / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    libs = cache / f"kafka-libs-{digest}"
    if (libs / ".complete").exists():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{libs.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (libs / ".complete").exists():  # fetched by another process meanwhile
            return libs
        return _fetch_into(pom, libs)


def _fetch_into(pom: Path, libs: Path) -> Path:
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed to fetch the Kafka broker")
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={partial}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"mvn could not fetch the Kafka broker:\n{result.stdout}{result.stderr}")
    (partial / ".complete").touch()
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def _cluster_id() -> str:
    """A Kafka cluster id: a UUID as 22 characters of URL-safe base64, never starting with '-'.

    `kafka-storage format -t <id>` reads an id that starts with '-' as an option and stops, so
    such UUIDs (about 1 in 64) are drawn again, as Kafka's own Uuid.randomUuid() does.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class LocalKafka:
    """One combined broker/controller node on 127.0.0.1, its data in a private directory.

    Use as a context manager or call start()/stop(). The JVM is stopped by its own PID, and at
    interpreter exit if the caller forgot.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        cache: Path = DEFAULT_CACHE,
        heap: str = "512m",
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="callsync-kafka-"))
        self.cache = cache
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _properties(self) -> str:
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=1000",
            "log.retention.hours=168",
            "",
        ])

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH; the Kafka broker needs a JRE 17+")
        return [
            java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.yaml'}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def start(self, timeout: float = 120.0) -> str:
        started = time.monotonic()
        libs = fetch_broker_libs(self.cache)
        config = self.data_dir / "server.properties"
        fresh = not (self.data_dir / "logs" / "meta.properties").exists()
        config.write_text(self._properties())
        if fresh:
            fmt = subprocess.run(  # noqa: S603
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                           "-c", str(config)),
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"kafka-storage format failed:\n{fmt.stdout}{fmt.stderr}")
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603
            self._java(libs, "kafka.Kafka", str(config)),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise BrokerError(f"the broker exited with {code}:\n{self._tail()}")
            if READY_LINE in self.log_file.read_text(errors="replace") and self._accepts():
                self.startup_seconds = time.monotonic() - started
                return self.bootstrap_servers
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker did not start within {timeout:.0f}s:\n{self._tail()}")

    def _accepts(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def _tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Stop the JVM abruptly (SIGKILL), keeping its data: a crash, for recovery tests."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
