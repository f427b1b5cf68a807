"""TLS with client certificates against a real etcd: every request (the keep-alives' own
connection too) is verified both ways, and a client without the CA is refused in one line."""

from __future__ import annotations

import pytest

from tts_ops.discovery.record import InstanceRecord
from tts_ops.errors import OperationFailed


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    from tts_ops_etcd.testing import EtcdCluster, make_certs, require_etcd

    require_etcd()

    base = tmp_path_factory.mktemp("etcd-tls")
    certs = make_certs(base / "certs")
    with EtcdCluster(base / "data", members=1, tls=certs) as cluster:
        yield cluster, certs


def store(cluster, **tls):
    from tts_ops_etcd.options import EtcdOptions
    from tts_ops_etcd.store import EtcdStore

    return EtcdStore(EtcdOptions(endpoints=cluster.endpoints, prefix="/tls", node="n1", **tls))


def test_tls_with_client_certificates(tls_cluster):
    cluster, certs = tls_cluster
    assert cluster.endpoints[0].startswith("https://")
    s = store(cluster, ca_cert=str(certs["ca"]), cert=str(certs["cert"]), key=str(certs["key"]))
    s.register(InstanceRecord(id="svc", service="svc", host="127.0.0.1", port=9000, ttl=5))
    assert [r.id for r in s.list()] == ["svc:n1"]
    assert s.heartbeat("svc") == (True, None)  # the keep-alive's own https connection
    assert s.cluster._fast is not None and s.cluster._fast.sock is not None
    assert s.cluster._fast.sock.version().startswith("TLS")


def test_a_client_that_cannot_verify_the_server_is_refused_in_one_line(tls_cluster):
    cluster, certs = tls_cluster
    with pytest.raises(OperationFailed) as err:
        store(cluster).list()  # no CA: the server's certificate is not trusted
    assert "\n" not in str(err.value) and "certificate verify failed" in str(err.value)
    with pytest.raises(OperationFailed) as err:  # the CA, but no client certificate
        store(cluster, ca_cert=str(certs["ca"])).list()
    assert "\n" not in str(err.value)


def test_the_tls_lines_say_which_setting_to_fix(tls_cluster):
    cluster, certs = tls_cluster
    with pytest.raises(OperationFailed, match=r"check discovery\.ca_cert"):
        store(cluster).list()
    with pytest.raises(OperationFailed, match=r"set discovery\.cert and discovery\.key"):
        store(cluster, ca_cert=str(certs["ca"])).list()
