"""A throw-away PostgreSQL server for tests: initdb + pg_ctl from Debian's ``postgresql``
package, on a free loopback port, in a temporary folder, removed afterwards.

PostgreSQL refuses to run as root, and tests run as root in CI, so as root the server runs
as the ``postgres`` system user (created by the Debian package) through ``runuser``.
``PostgresServer.start`` raises ``PostgresUnavailable`` with the reason when it cannot start;
``postgres_or_skip`` turns that into a skip, or into a failure where the environment
promises PostgreSQL (``SARCO_REQUIRE_SERVICES=1``, as in CI).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from testkit.mosquitto import free_port

SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot run here; the message says why and how to fix it."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise PostgresUnavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: "
                                  "apt-get install postgresql")
    return Path(found[-1]).parent


class PostgresServer:
    """``with PostgresServer() as pg: engine = make_engine(pg.url)``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._bin = _bin_dir()
        self._root = Path(tempfile.mkdtemp(prefix="sarco-pg-"))
        self._data = self._root / "data"
        self._log = self._root / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(f"running as root and there is no {SERVER_USER!r} "
                                          "user to run the server as: apt-get install "
                                          "postgresql creates it") from None
            os.chown(self._root, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://sarco@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [*self._as_user, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self._log.read_text() if self._log.exists() else ""
            raise PostgresUnavailable(f"{Path(args[0]).name} failed: {result.stderr.strip()}"
                                      f"{' / ' + log.strip()[-500:] if log else ''}")

    def start(self) -> None:
        self._run(str(self._bin / "initdb"), "-D", str(self._data), "-U", "sarco",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = (f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run(str(self._bin / "pg_ctl"), "-D", str(self._data), "-l", str(self._log),
                  "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        if (self._data / "postmaster.pid").exists():
            subprocess.run([*self._as_user, str(self._bin / "pg_ctl"), "-D", str(self._data),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_or_skip() -> PostgresServer:
    """A started server, or a skip naming the reason (a failure under
    SARCO_REQUIRE_SERVICES=1)."""
    try:
        server = PostgresServer()
        server.__enter__()
        return server
    except (PostgresUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        message = f"PostgreSQL test server could not start: {exc}"
        if os.environ.get("SARCO_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
