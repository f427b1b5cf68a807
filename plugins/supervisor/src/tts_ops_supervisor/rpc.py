"""Talking to supervisord: XML-RPC over its unix socket or HTTP, faults as one line.

The standard library's ``xmlrpc.client`` with a small transport of our own for unix
sockets: importing the supervisor package's ``supervisor.xmlrpc`` costs ~55 ms (it pulls
in packaging machinery), more than ``supervisorctl status`` takes in all, and our
transport speaks the same HTTP/1.1 to the same ``/RPC2``. Batches go through
``system.multicall`` called directly: the standard library's MultiCall helper breaks on
supervisord's replies.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
import xmlrpc.client
from typing import Any

from tts_ops_supervisor.conf import SupervisorConf

FAULTS = {1: "UNKNOWN_METHOD", 2: "INCORRECT_PARAMETERS", 3: "BAD_ARGUMENTS",
          6: "SHUTDOWN_STATE", 10: "BAD_NAME", 11: "BAD_SIGNAL", 20: "NO_FILE",
          21: "NOT_EXECUTABLE", 30: "FAILED", 40: "ABNORMAL_TERMINATION", 50: "SPAWN_ERROR",
          60: "ALREADY_STARTED", 70: "NOT_RUNNING", 80: "SUCCESS", 90: "ALREADY_ADDED",
          91: "STILL_RUNNING", 92: "CANT_REREAD"}


class Unreachable(Exception):
    pass


class RpcFault(Exception):
    def __init__(self, fault: xmlrpc.client.Fault, method: str) -> None:
        self.code = fault.faultCode
        self.name = FAULTS.get(fault.faultCode, "UNKNOWN")
        detail = str(fault.faultString).split(":", 1)[-1].strip()
        super().__init__(f"supervisord refused {method}: {self.name}"
                         + (f" ({detail})" if detail and detail != self.name else ""))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """HTTP to a TCP address or a unix socket (``unix:///path``)."""

    def __init__(self, serverurl: str, timeout: float) -> None:
        super().__init__()
        self.serverurl = serverurl
        self.timeout = timeout

    def make_connection(self, host):  # host carries only the credentials for us
        # the base class sets the Basic Authorization header here, from user:password@
        _chost, self._extra_headers, _x509 = self.get_host_info(host)
        if self.serverurl.startswith("unix://"):
            return _UnixConnection(self.serverurl[len("unix://"):], self.timeout)
        parts = urllib.parse.urlsplit(self.serverurl)
        return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                          timeout=self.timeout)


class Client:
    def __init__(self, conf: SupervisorConf, timeout: float = 60.0) -> None:
        self.conf = conf
        auth = ""
        if conf.username:
            # xmlrpc.client turns user:password@ into a Basic Authorization header
            auth = (urllib.parse.quote(conf.username, safe="") + ":"
                    + urllib.parse.quote(conf.password or "", safe="") + "@")
        self.proxy = xmlrpc.client.ServerProxy(f"http://{auth}localhost/RPC2",
                                               transport=_Transport(conf.serverurl, timeout))

    def call(self, method: str, *args: Any) -> Any:
        target = self.proxy
        for part in method.split("."):
            target = getattr(target, part)
        try:
            return target(*args)
        except xmlrpc.client.Fault as fault:
            raise RpcFault(fault, method) from None
        except xmlrpc.client.ProtocolError as exc:
            if exc.errcode == 401:
                raise Unreachable(f"{self.conf.serverurl}: authentication failed (check the"
                                  " credentials in the config or TTS_OPS_SUPERVISOR_USER/"
                                  "PASSWORD)") from None
            raise Unreachable(f"{self.conf.serverurl}: HTTP {exc.errcode}") from None
        except OSError as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise Unreachable(f"supervisord at {self.conf.serverurl} does not answer ({why});"
                              f" start it with: supervisord -c {self.conf.path}") from None

    def multicall(self, calls: list[tuple[str, tuple]]) -> list[Any]:
        """Results in order; supervisord returns them unwrapped, a fault as a dict."""
        return self.call("system.multicall",
                         [{"methodName": m, "params": list(a)} for m, a in calls])
