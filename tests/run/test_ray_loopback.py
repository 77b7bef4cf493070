"""A local Ray cluster of `bench run --ray` listens on loopback only (the brief: nothing escapes).

On Linux a plain ray.init advertises the host's address and binds its GCS, raylet, workers and
driver on every interface; bench starts it in Ray's single-machine mode instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.run.listeners import descendants, non_loopback_listeners
from bench.run.ray_groups import _SINGLE_MACHINE_ENV, _ray_session

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.xdist_group("ray"),
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")]


def _listening_ports() -> set[int]:
    """Ports of every listening TCP socket on this host (hex in /proc/net/tcp{,6})."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_local_ray_cluster_listens_on_loopback_only() -> None:
    saved_env = os.environ.get(_SINGLE_MACHINE_ENV)
    with _ray_session(ray, None):
        # A task starts a worker process (it listens too) besides the GCS, raylet and agents.
        assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()
        gcs_host, gcs_port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
        ray_pids = descendants(os.getpid())
        assert gcs_host == "127.0.0.1" and int(gcs_port) in _listening_ports()
        assert len(ray_pids) > 3  # gcs_server, raylet, a worker at least: the check below saw them
        assert non_loopback_listeners(ray_pids) == []
    assert not ray.is_initialized()
    assert os.environ.get(_SINGLE_MACHINE_ENV) == saved_env  # this process's environment as it was
