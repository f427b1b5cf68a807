"""``tts-ops web``: the status page and ``/api/status`` (`tts_ops.web`), on loopback unless
told otherwise, read-only unless started with a token."""

from __future__ import annotations

from typing import Any

import click

from tts_ops.errors import ConfigError


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> Any:
    import socket

    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: {exc.strerror}; give an address such as"
                          " 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror});"
                          " choose another with --port") from None
    sock.listen(1024)
    return sock


def _allowed_hosts(host: str, loopback: bool, extra: tuple[str, ...]) -> list[str]:
    """Host header names the page answers (DNS rebinding): loopback's names, the bound
    address, and ``--allow-host``; on a wildcard address also this machine's names."""
    import socket

    from tts_ops.web.server import LOOPBACK_NAMES

    names = [*LOOPBACK_NAMES, *extra]
    if not loopback:
        names.append(f"[{host}]" if ":" in host else host)
        if host in ("0.0.0.0", "::", ""):
            names += [socket.gethostname(), socket.getfqdn()]
    return list(dict.fromkeys(n for n in names if n))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other hosts read status"
                   " and logs.")
@click.option("--port", type=click.IntRange(0, 65535), default=9100, show_default=True)
@click.option("--token", envvar="TTS_OPS_WEB_TOKEN", default=None, metavar="TOKEN",
              help="Allow restart, stop and start to clients that send it (Authorization:"
                   " Bearer). Prefer $TTS_OPS_WEB_TOKEN: other users can read argv.")
@click.option("--refresh", "refresh_s", type=click.FloatRange(0.25, 3600), default=2.0,
              show_default=True, help="Seconds between the page's updates.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests whose Host header is NAME (a name clients use for"
                   " this machine); loopback names and the bound address always are.")
@click.option("--process-manager", "pm", default=None, help="As for status.")
@click.pass_obj
def web(app, host: str, port: int, token: str | None, refresh_s: float, pm: str | None,
        allow_hosts: tuple[str, ...]) -> None:
    """A status page that refreshes itself, with /api/status JSON; actions need a token."""
    import uvicorn

    from tts_ops.web.guard import ACCEPT_BATCH, connection_cap, limit_error_logs, protocol_class
    from tts_ops.web.server import Views, build

    for name in allow_hosts:
        if not name or any(c.isspace() or c in "/@?#" for c in name) or len(name) > 253:
            raise ConfigError(f"--allow-host {name[:80]!r}: give a host name or address as"
                              " clients send it in Host (no port, path or spaces)")
    app.config  # a bad config is one line now, not a 500 on every request  # noqa: B018
    sock = _bind(host, port)
    loopback = _is_loopback(host)
    views = Views(app, pm, token, refresh_s)
    # the charts' last 15 minutes, page open or not (a page's polls sample more often)
    views.sample_every(max(15.0, refresh_s))
    allowed = _allowed_hosts(host, loopback, allow_hosts)
    asgi = build(views, allowed)
    limit_error_logs()
    from tts_ops.cli.pipes import end_on_sigterm

    # from before the address is printed: uvicorn shuts down gracefully on SIGTERM, then
    # raises it again with the handler it found (ours), so the command ends with its one
    # line instead of dying without a word
    end_on_sigterm()
    where = f"[{host}]" if ":" in host else host
    mode = "actions need the token" if views.token else "read-only (no --token)"
    click.echo(f"tts-ops web: http://{where}:{sock.getsockname()[1]}/ ({mode})")
    if not loopback:
        click.echo(f"tts-ops: warning: listening on {host}: anyone who can reach it reads"
                   " status and logs", err=True)
        click.echo(f"tts-ops web: answering Host {', '.join(allowed)} (more with"
                   " --allow-host)", err=True)
    # a small accept batch and a cap under the descriptor limit: a flood of slow clients
    # closes the oldest of them, never the page (see tts_ops.web.guard)
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", access_log=False,
                                           lifespan="off", backlog=ACCEPT_BATCH,
                                           http=protocol_class(connection_cap())))
    server.run(sockets=[sock])

