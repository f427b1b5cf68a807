"""The registry conformance suite against the etcd store on a real 3-member cluster."""

from __future__ import annotations

import pytest

from tts_ops.testing.contracts import RegistryStoreConformance

pytestmark = pytest.mark.slow


class TestEtcdStore(RegistryStoreConformance):
    @pytest.fixture
    def open_store(self, cluster, prefix):
        from tts_ops_etcd.store import open_store

        return lambda: open_store(cluster.url(prefix))
