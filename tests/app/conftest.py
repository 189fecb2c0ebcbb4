"""Fixtures of the app's tests: the inputs the app reads, and one running app per session
(app_server.py says what they are)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from app_server import call, free_port, serve_command, write_inputs
from helpers import ROOT


@pytest.fixture(scope="session")
def app_inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="session")
def server(app_inputs, tmp_path_factory):
    """Base URL of the running app (default host: 127.0.0.1); stopped after the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("app-log") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(serve_command(app_inputs, port), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with status {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if call(base, "/api/info", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer within 600 s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def port_of(server):
    return int(server.rsplit(":", 1)[1])
