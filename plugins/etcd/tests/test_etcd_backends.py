"""Records on etcd leases under the process managers that send no heartbeats themselves
(systemd, supervisord): the keeper each runs beside a service keeps its lease alive."""

from __future__ import annotations

import pytest

from tts_ops.testing.heartbeats import check_record_outlives_ttl

pytestmark = pytest.mark.slow


def _etcd(cluster, prefix):
    return {"registry": "etcd", "endpoints": cluster.endpoints, "prefix": prefix,
            "node": "n1"}


def test_a_systemd_service_keeps_its_lease_past_its_ttl(tmp_path, cluster, prefix):
    from tts_ops_systemd.testing import user_manager_for_tests

    with user_manager_for_tests():
        check_record_outlives_ttl(tmp_path, "systemd", ["--scope", "user"],
                                  discovery=_etcd(cluster, prefix))


def test_a_supervisord_service_keeps_its_lease_past_its_ttl(tmp_path, cluster, prefix):
    from tts_ops_supervisor.daemon import PrivateSupervisord

    with PrivateSupervisord() as daemon:
        check_record_outlives_ttl(tmp_path, "supervisor", ["--supervisor-conf", str(daemon.conf)],
                                  discovery=_etcd(cluster, prefix))
