"""A moto server for the tests: started on a free loopback port for the test session
and stopped afterwards. If it cannot start, the tests fail; they never skip."""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

REGION = "eu-west-1"
STARTUP_SECONDS = 30


@dataclass
class Moto:
    """A running moto server and a way to make clients for it."""

    endpoint: str
    log: Path

    def client(self, service: str):
        """A boto3 client for one service of this server, with test credentials."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, to explain a failed call."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in text[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def moto():
    """moto's server (`python -m moto.server`) on 127.0.0.1 and a free port."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="adtrack-moto-") as scratch:
        log = Path(scratch) / "moto.log"
        with log.open("w") as sink:
            server = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(server, endpoint, log)
            yield Moto(endpoint=endpoint, log=log)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_until_up(server: subprocess.Popen, endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"moto server exited with {server.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(
        f"moto server did not answer on {endpoint} within {STARTUP_SECONDS}s:\n"
        f"{log.read_text(errors='replace')}"
    )
