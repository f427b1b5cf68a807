"""The embedded registry store: one SQLite file in WAL mode (standard library only).

Every write is one transaction (BEGIN IMMEDIATE ... COMMIT): concurrent writers in
other processes wait for the lock instead of losing updates, and a writer killed
mid-transaction leaves the last committed state intact. Every change also appends a
row to ``changes`` with a sequence number, which is how watchers in other processes
follow it (per service, so one busy service does not wake watchers of another).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tts_ops.discovery.record import HEALTH, InstanceRecord
from tts_ops.errors import ConfigError, OperationFailed

MAGIC = "tts-ops-registry"
SCHEMA = 1
KEEP_CHANGES = 10_000

_DDL = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE instances(
    id TEXT PRIMARY KEY, service TEXT NOT NULL, service_type TEXT NOT NULL,
    host TEXT NOT NULL, port INTEGER NOT NULL, url TEXT NOT NULL, release TEXT,
    weight INTEGER NOT NULL, labels TEXT NOT NULL, health TEXT NOT NULL,
    registered_at REAL NOT NULL, last_heartbeat REAL NOT NULL, ttl REAL NOT NULL,
    meta TEXT NOT NULL, beats INTEGER NOT NULL DEFAULT 0);
CREATE INDEX instances_service ON instances(service);
CREATE TABLE changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
    kind TEXT NOT NULL, id TEXT NOT NULL, service TEXT NOT NULL, record TEXT);
CREATE INDEX changes_service ON changes(service, seq);
"""

COLUMNS = ("id", "service", "service_type", "host", "port", "url", "release", "weight",
           "labels", "health", "registered_at", "last_heartbeat", "ttl", "meta")


class SqliteStore:
    """Registry records in ``path``. Created when missing; never overwritten when foreign."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # one connection, shared by threads (parallel start/stop): one statement at a time
        self._lock = threading.RLock()
        existed = self.path.exists()
        if existed:
            if not os.access(self.path, os.R_OK):
                raise OperationFailed(f"registry {self.path}: cannot read it (permission"
                                      " denied)")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # owner only (SQLite gives its -wal and -shm files the same mode): records
                # hold addresses and labels, and whoever writes them steers clients
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            except FileExistsError:
                pass  # another process created it meanwhile
            except OSError as exc:
                raise OperationFailed(f"registry {self.path}: cannot create it"
                                      f" ({exc.strerror})") from None
        self.readonly = False
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout=30000")
            if existed:
                self._check_schema()
            else:
                self._create()
            with contextlib.suppress(sqlite3.OperationalError):  # read-only: keep going
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if not existed or "not a database" in text or "malformed" in text:
                raise self._error(exc) from None
            # a full or read-only disk: the previous state must stay readable
            self._open_readonly(exc)

    def _open_readonly(self, cause: sqlite3.DatabaseError) -> None:
        """Open for reading only: ``mode=ro``, else ``immutable`` (a WAL database needs its
        ``-shm`` file to be read normally, and a full disk cannot create one)."""
        from urllib.parse import quote

        with contextlib.suppress(Exception):
            self.db.close()
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                db = sqlite3.connect(f"file:{quote(str(self.path))}?{flags}", uri=True,
                                     timeout=30, isolation_level=None,
                                     check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError:
                continue
            self.db, self.readonly, self.why = db, True, str(cause)
            return
        raise self._error(cause) from None

    # --- opening ---

    def _check_schema(self) -> None:
        # SQLite itself tells a foreign file apart, with reads only. Never open() the file
        # directly: closing any descriptor of it would drop the POSIX locks that other
        # connections of this process hold on it (a classic SQLite corruption pitfall).
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "encrypted" in str(exc):
                raise ConfigError(f"registry {self.path}: this file is not a tts-ops registry"
                                  " (not an SQLite database); it was left untouched: choose"
                                  " another path") from None
            raise
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='magic'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None or row[0] != MAGIC:
            if self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                self._create()  # an empty file, e.g. created by touch
                return
            raise ConfigError(f"registry {self.path}: an SQLite database, but not a tts-ops"
                              " registry; it was left untouched: choose another path")

    def _create(self) -> None:
        with self._tx():
            if self.db.execute("SELECT count(*) FROM sqlite_master WHERE name='meta'"
                               ).fetchone()[0]:
                return  # another process created it first
            for statement in _DDL.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO meta VALUES ('magic', ?), ('schema', ?)",
                            (MAGIC, str(SCHEMA)))

    def _error(self, exc: sqlite3.DatabaseError) -> Exception:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return OperationFailed(f"registry {self.path}: read-only ({text}); the previous"
                                   " state is unchanged and still readable")
        if "full" in text:
            return OperationFailed(f"registry {self.path}: the disk is full ({text}); the"
                                   " previous state is unchanged")
        if "not a database" in text or "malformed" in text:
            return ConfigError(f"registry {self.path}: corrupt ({text}); it was left untouched")
        return OperationFailed(f"registry {self.path}: {text}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise OperationFailed(f"registry {self.path}: opened read-only ({self.why}); the"
                                  " previous state is unchanged and still readable")
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._error(exc) from None
                raise

    # --- writes ---

    def _change(self, kind: str, record: InstanceRecord | None, rid: str, service: str) -> dict:
        now = time.time()
        body = json.dumps(record.to_json(now)) if record is not None else None
        cur = self.db.execute(
            "INSERT INTO changes(ts, kind, id, service, record) VALUES (?,?,?,?,?)",
            (now, kind, rid, service, body))
        return {"seq": cur.lastrowid, "ts": now, "kind": kind, "id": rid, "service": service,
                "record": record.to_json(now) if record is not None else None}

    def register(self, record: InstanceRecord) -> dict:
        values = asdict(record)
        values["labels"] = json.dumps(values["labels"])
        values["meta"] = json.dumps(values["meta"])
        with self._tx() as db:
            existed = db.execute("SELECT 1 FROM instances WHERE id=?", (record.id,)).fetchone()
            db.execute(f"INSERT OR REPLACE INTO instances({','.join(COLUMNS)})"
                       f" VALUES ({','.join('?' * len(COLUMNS))})",
                       [values[c] for c in COLUMNS])
            return self._change("updated" if existed else "registered", record, record.id,
                                record.service)

    def deregister(self, rid: str) -> dict | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM instances WHERE id=?", (rid,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM instances WHERE id=?", (rid,))
            return self._change("deregistered", InstanceRecord.from_row(dict(row)), rid,
                                row["service"])

    def heartbeat(self, rid: str, *, health: str | None = None,
                  record: InstanceRecord | None = None, now: float | None = None
                  ) -> tuple[bool, dict | None]:
        """(found, change). A missing record is registered again when ``record`` is given."""
        now = time.time() if now is None else now
        if health is not None and health not in HEALTH:
            raise ConfigError(f"health: must be one of {', '.join(HEALTH)} (got {health!r})")
        with self._tx() as db:
            row = db.execute("SELECT health, last_heartbeat, ttl, service FROM instances"
                             " WHERE id=?", (rid,)).fetchone()
            if row is None:
                if record is None:
                    return False, None
                record.last_heartbeat = now
                if health:
                    record.health = health
                values = asdict(record)
                values["labels"] = json.dumps(values["labels"])
                values["meta"] = json.dumps(values["meta"])
                db.execute(f"INSERT INTO instances({','.join(COLUMNS)})"
                           f" VALUES ({','.join('?' * len(COLUMNS))})",
                           [values[c] for c in COLUMNS])
                return False, self._change("registered", record, rid, record.service)
            was_stale = now - row["last_heartbeat"] > row["ttl"]
            new_health = health or row["health"]
            db.execute("UPDATE instances SET last_heartbeat=?, health=?, beats=beats+1"
                       " WHERE id=?", (now, new_health, rid))
            change = None
            if new_health != row["health"] or was_stale:
                rec = self._get(db, rid)
                change = self._change("health", rec, rid, row["service"])
            return True, change

    def update(self, rid: str, **fields: Any) -> dict | None:
        """Set ``weight``, ``health`` or ``release`` of a record; None if it does not exist."""
        allowed = {"weight", "health", "release"}
        if set(fields) - allowed:
            raise ConfigError(f"{sorted(set(fields) - allowed)[0]}: cannot be updated")
        with self._tx() as db:
            rec = self._get(db, rid)
            if rec is None:
                return None
            for key, value in fields.items():
                setattr(rec, key, value)
            InstanceRecord.__post_init__(rec)
            sets = ", ".join(f"{k}=?" for k in fields)
            db.execute(f"UPDATE instances SET {sets} WHERE id=?", (*fields.values(), rid))
            kind = "weight" if "weight" in fields else "health"
            return self._change(kind, rec, rid, rec.service)

    def cleanup(self, deregister_after: float, now: float | None = None) -> list[dict]:
        """Remove records without a heartbeat for ``ttl + deregister_after`` seconds."""
        now = time.time() if now is None else now
        with self._tx() as db:
            rows = db.execute("SELECT * FROM instances WHERE ? - last_heartbeat > ttl + ?",
                              (now, deregister_after)).fetchall()
            changes = []
            for row in rows:
                db.execute("DELETE FROM instances WHERE id=?", (row["id"],))
                changes.append(self._change("stale_removed",
                                            InstanceRecord.from_row(dict(row)), row["id"],
                                            row["service"]))
            db.execute("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?",
                       (KEEP_CHANGES,))
            return changes

    # --- reads ---

    def _get(self, db: sqlite3.Connection, rid: str) -> InstanceRecord | None:
        row = db.execute("SELECT * FROM instances WHERE id=?", (rid,)).fetchone()
        return InstanceRecord.from_row(dict(row)) if row is not None else None

    def get(self, rid: str) -> InstanceRecord | None:
        try:
            with self._lock:
                return self._get(self.db, rid)
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def list(self, *, service: str | None = None, service_type: str | None = None
             ) -> list[InstanceRecord]:
        sql, args = f"SELECT {','.join(COLUMNS)} FROM instances", []
        where = []
        if service:
            where.append("service=?")
            args.append(service)
        if service_type:
            where.append("service_type=?")
            args.append(service_type)
        if where:
            sql += " WHERE " + " AND ".join(where)
        try:
            with self._lock:
                cur = self.db.cursor()
                cur.row_factory = None  # plain tuples: the bulk read is the hot path
                rows = cur.execute(sql + " ORDER BY id", args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        return [InstanceRecord.from_row(dict(zip(COLUMNS, r, strict=True))) for r in rows]

    def beats(self) -> int:
        with self._lock:
            return self.db.execute("SELECT coalesce(sum(beats), 0) FROM instances").fetchone()[0]

    def last_seq(self, service: str | None = None) -> int:
        with self._lock:
            return self._last_seq(service)

    def _last_seq(self, service: str | None) -> int:
        if service:
            row = self.db.execute("SELECT max(seq) FROM changes WHERE service=?",
                                  (service,)).fetchone()
        else:
            row = self.db.execute("SELECT max(seq) FROM changes").fetchone()
        return row[0] or 0

    def changes(self, since: int, service: str | None = None) -> list[dict]:
        sql = "SELECT * FROM changes WHERE seq > ?"
        args: list[Any] = [since]
        if service:
            sql += " AND service=?"
            args.append(service)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY seq", args).fetchall()
        return [{"seq": r["seq"], "ts": r["ts"], "kind": r["kind"], "id": r["id"],
                 "service": r["service"],
                 "record": json.loads(r["record"]) if r["record"] else None} for r in rows]

    def close(self) -> None:
        self.db.close()
