"""A real HAProxy for the tests: required in CI, a skip elsewhere when it is missing."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def haproxy():
    from tts_ops_haproxy.testing import require_haproxy

    return require_haproxy()


@pytest.fixture(scope="session")
def user_manager():
    from tts_ops_systemd.testing import user_manager_for_tests

    with user_manager_for_tests() as manager:
        yield manager


@pytest.fixture(scope="session")
def supervisord():
    from tts_ops_supervisor.daemon import PrivateSupervisord

    with PrivateSupervisord() as daemon:
        yield daemon


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    from tts_ops_etcd.testing import EtcdCluster, require_etcd

    require_etcd()
    with EtcdCluster(tmp_path_factory.mktemp("etcd"), members=3) as cluster:
        yield cluster
