"""Whether a Docker engine answers (testcontainers' broker, else our own), asked through the SDK."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pipeline.devtools.brokers import docker_engine_answers


class FakeEngine(BaseHTTPRequestHandler):
    """Just what the SDK asks: the API version, then /_ping."""

    def do_GET(self) -> None:
        if self.path == "/version":
            body = json.dumps({"ApiVersion": "1.45", "Version": "28.2.2"}).encode()
            kind = "application/json"
        elif self.path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    server = socketserver.ThreadingUnixStreamServer(str(path), FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_engine_that_answers_its_ping_is_used(
        engine_socket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    assert docker_engine_answers()


@pytest.mark.parametrize("where", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"])
def test_no_engine_means_no_and_leaves_no_socket_open(
        where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", where)
    assert not docker_engine_answers()  # warnings are errors here: an unclosed socket would fail
