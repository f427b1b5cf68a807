"""Calls to an etcd cluster through etcd3gw, with fail-over between its endpoints.

etcd3gw speaks etcd's JSON gateway (``/v3/...``) over requests: no grpc and no protobuf
(the ``etcd3`` package pins ``protobuf<4``), and it is kept by the OpenStack project. It
talks to one endpoint; this module tries the next when one does not answer, logs in when
a user is set (the token goes in a header, the password is dropped after use), and turns
every failure into one line that names the endpoints.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client

from tts_ops.plugin import OperationFailed
from tts_ops_etcd.keys import b64, prefix_end, unb64  # noqa: F401 - also imported from here
from tts_ops_etcd.options import EtcdOptions

_DOWN = (etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError)


class Unavailable(OperationFailed):
    """No endpoint of the cluster answered."""


class Cluster:
    def __init__(self, options: EtcdOptions) -> None:
        self.options = options
        from tts_ops_etcd import downed

        self.clients = [self._client(url) for url in options.endpoints]
        # a member that failed lately is tried after the others: a dead one costs its
        # timeout once, not once per command
        self._down = downed.load()
        self._order = downed.order(list(options.endpoints), self._down)
        self.current = self._order[0]
        self._lock = threading.Lock()
        self._token: str | None = None
        self._fast: Any = None  # a kept connection to the leader, for keep-alives
        # per request: requests lets $REQUESTS_CA_BUNDLE override a session's CA file
        # (requests#3829), which would ignore discovery.ca_cert on many hosts
        self._tls: dict[str, Any] = {"verify": options.ca_cert} if options.ca_cert else {}

    def _client(self, url: str) -> Etcd3Client:
        parts = urlsplit(url)
        opts = self.options
        return Etcd3Client(host=parts.hostname or "127.0.0.1", port=parts.port or 2379,
                           protocol=parts.scheme, ca_cert=opts.ca_cert, cert_key=opts.key,
                           cert_cert=opts.cert, timeout=opts.timeout, api_path="/v3/")

    def _login(self, client: Etcd3Client) -> None:
        if self.options.user is None or "Authorization" in client.session.headers:
            return
        if self._token is None:
            answer = client.post(client.get_url("/auth/authenticate"), **self._tls,
                                 json={"name": self.options.user,
                                       "password": self.options.password() or ""})
            self._token = answer["token"]
        client.session.headers["Authorization"] = self._token

    def call(self, path: str, body: dict[str, Any], *, stream: bool = False) -> Any:
        """POST ``body`` to ``/v3/PATH`` on the first endpoint that answers. While the
        members elect a leader (one died) they refuse with "leader changed" or "no
        leader": asked again for up to twice the timeout, the time an election takes."""
        import time

        deadline = time.monotonic() + 2 * self.options.timeout
        while True:
            answered, answer, electing, last = self._round(path, body, stream)
            if answered:
                return answer
            if not electing or time.monotonic() > deadline:
                raise Unavailable(
                    f"etcd: no endpoint answered ({', '.join(self.options.endpoints)}):"
                    f" {_why(last)}; supervised services keep running, and heartbeats"
                    " resume when etcd is back")
            time.sleep(0.1)

    def _round(self, path: str, body: dict[str, Any], stream: bool, relogged: bool = False
               ) -> tuple[bool, Any, bool, Exception | None]:
        """(answered, the answer, whether a member said a leader is being elected, the last
        error)."""
        last: Exception | None = None
        electing = False
        for index in [self.current, *(i for i in self._order if i != self.current)]:
            client = self.clients[index]
            try:
                self._login(client)
                if stream:
                    answer: Any = (client, self._stream(client, path, body))
                else:
                    answer = client.post(client.get_url(path), json=body, **self._tls)
            except _DOWN as exc:
                last = exc
                if "leader" in (exc.detail_text or ""):
                    electing = True  # it answered: an election, not a dead member
                else:
                    self._mark(index, down=True)
                continue
            except etcd_errors.Etcd3Exception as exc:
                if (not relogged and self._token is not None
                        and "invalid auth token" in (exc.detail_text or "")):
                    # a simple token lapses after 5 idle minutes: log in again, once
                    self._token = None
                    for other in self.clients:
                        other.session.headers.pop("Authorization", None)
                    return self._round(path, body, stream, relogged=True)
                raise self._failed(exc) from None
            self.current = index
            self._mark(index, down=False)
            return True, answer, False, None
        return False, None, electing, last

    def _mark(self, index: int, *, down: bool) -> None:
        import time

        from tts_ops_etcd import downed

        url = self.options.endpoints[index]
        if down == (url in self._down):
            return  # already known: no write on the hot path
        marks = downed.load()
        if down:
            marks[url] = self._down[url] = time.time() + downed.DOWN_FOR
        else:
            marks.pop(url, None)
            self._down.pop(url, None)
        downed.save(marks)
        self._order = downed.order(list(self.options.endpoints), self._down)

    def _stream(self, client: Etcd3Client, path: str, body: dict[str, Any]) -> Any:
        import requests

        try:
            resp = client.session.post(client.get_url(path), json=body, stream=True, **self._tls,
                                       timeout=(self.options.timeout, None))
        except requests.exceptions.ConnectionError as exc:
            raise etcd_errors.ConnectionFailedError(str(exc)) from None
        if resp.status_code != 200:
            resp.close()
            raise etcd_errors.ConnectionFailedError(f"HTTP {resp.status_code}")
        return resp

    def _failed(self, exc: etcd_errors.Etcd3Exception) -> OperationFailed:
        detail = exc.detail_text or str(exc)
        if "authentication" in detail or "permission denied" in detail or "token" in detail:
            return OperationFailed(f"etcd: {_first_line(detail)}: check discovery.user and"
                                   " its password (discovery.password_file or"
                                   " $TTS_OPS_ETCD_PASSWORD)")
        return OperationFailed(f"etcd: {_first_line(detail)}")

    def keepalive(self, lease: int) -> int:
        """Renew a lease; its remaining TTL (0: it is gone).

        The hot path of every heartbeat. etcd3gw's requests session costs about 0.8 ms of
        CPU a call, more than etcd's own work on a keep-alive, and a follower forwards a
        keep-alive to the leader: one kept http.client connection to the leader does
        2,500 keep-alives/s from 8 processes where etcd3gw does 850-980 (bench/cases_etcd,
        docs/benchmarks.md). Anything unexpected falls back to the etcd3gw path."""
        import http.client
        import json

        body = json.dumps({"ID": lease})
        for _attempt in range(2):
            conn = self._leader_connection()
            if conn is None:
                break
            try:
                conn.request("POST", "/v3/lease/keepalive", body, self._headers())
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    return int(json.loads(data).get("result", {}).get("TTL", 0))
            except (OSError, http.client.HTTPException, ValueError):
                pass
            self._fast = None  # reconnect, and ask again who leads
        answer = self.call("/lease/keepalive", {"ID": lease})
        return int(answer.get("result", {}).get("TTL", 0))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        return headers

    def _leader_connection(self) -> Any:
        if self._fast is not None:
            return self._fast
        import http.client
        import ssl

        try:
            status = self.call("/maintenance/status", {})
            members = self.call("/cluster/member/list", {}).get("members", [])
        except OperationFailed:
            return None
        urls = next((m.get("clientURLs", []) for m in members
                     if m.get("ID") == status.get("leader")), [])
        url = next((u for u in urls if u in self.options.endpoints), None)
        if url is None:  # the leader is not among ours: the endpoint that answered
            url = self.options.endpoints[self.current]
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 2379
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.options.ca_cert)
            if self.options.cert and self.options.key:
                context.load_cert_chain(self.options.cert, self.options.key)
            self._fast = http.client.HTTPSConnection(host, port, timeout=self.options.timeout,
                                                     context=context)
        else:
            self._fast = http.client.HTTPConnection(host, port, timeout=self.options.timeout)
        return self._fast

    def revision(self) -> int:
        """The cluster's current revision."""
        key = b64(self.options.prefix)
        answer = self.call("/kv/range", {"key": key, "count_only": True})
        return int(answer["header"]["revision"])

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        for client in self.clients:
            client.session.close()


def _why(exc: Exception | None) -> str:
    """The reason in a requests error, without its chain of wrappers."""
    import re

    text = _first_line(exc)
    if isinstance(exc, etcd_errors.ConnectionTimeoutError):
        return "timed out"
    tls = re.search(r"certificate verify failed: ([^(]+)", text)
    if tls:
        return (f"TLS: certificate verify failed ({tls[1].strip()}): check discovery.ca_cert"
                " is the CA that signed the members' certificates")
    if "SSLError" in text or "SSL" in text:
        return ("TLS handshake failed (the members may want a client certificate: set"
                " discovery.cert and discovery.key)")
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found[1].strip().lower() if found else text


def _first_line(value: object) -> str:
    if isinstance(value, etcd_errors.Etcd3Exception):
        value = value.detail_text or type(value).__name__
    text = str(value or "unknown error").strip().splitlines()
    return text[0][:300] if text else "unknown error"
