"""A real 3-member etcd cluster on loopback ports, started once for these tests."""

from __future__ import annotations

import uuid

import pytest

from tts_ops_etcd.testing import require_etcd


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    require_etcd()
    from tts_ops_etcd.testing import EtcdCluster

    with EtcdCluster(tmp_path_factory.mktemp("etcd"), members=3) as cluster:
        yield cluster


@pytest.fixture
def cluster(etcd_cluster):
    """The shared cluster with every member up (a test that kills one gets it back)."""
    for i in range(etcd_cluster.size):
        if etcd_cluster.procs[i] is None:
            etcd_cluster.start(i)
    yield etcd_cluster
    for i in range(etcd_cluster.size):
        if etcd_cluster.procs[i] is None:
            etcd_cluster.start(i)


@pytest.fixture
def prefix():
    """A key prefix of its own per test: tests share the cluster, not their data."""
    return f"/t-{uuid.uuid4().hex[:12]}"
