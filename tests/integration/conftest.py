"""Fixtures for integration tests: start the real harmar binary on a free port."""
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import pytest

from harness import Harmar, harmar_bin


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.fixture
def harmar(tmp_path):
    """A `harmar serve` with embedded storage in a temporary data dir; stopped with SIGTERM."""
    servers = []

    def start(*args, env=None, wait_ready=True):
        h = Harmar(tmp_path / f"node{len(servers)}", list(args), env=env)
        h.start(wait_ready=wait_ready)
        servers.append(h)
        return h

    yield start
    for h in servers:
        h.stop()
