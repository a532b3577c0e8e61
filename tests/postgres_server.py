"""A throw-away PostgreSQL server for the test session: initdb in a temporary folder, pg_ctl
start on a free local port, one fresh database per test, everything removed at the end.

Debian installs the server binaries in /usr/lib/postgresql/<version>/bin, off PATH; they are
looked up there (newest version first), then on PATH. initdb refuses to run as root: as root the
server runs as the `postgres` system user that Debian's package creates (through runuser), with
the folder handed to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SUPERUSER = "sdbench"  # the server's superuser, whoever runs it
START_TIMEOUT_S = 60


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says what is missing."""


def _version_key(path: str) -> tuple:
    version = Path(path).parent.parent.name  # /usr/lib/postgresql/<version>/bin/initdb
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def find_server_binaries() -> Path:
    """The folder holding initdb and pg_ctl."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    for initdb in candidates:
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                            "/usr/lib/postgresql/*/bin or on PATH; install Debian's postgresql package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bin = find_server_binaries()
        self.as_user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root, and initdb refuses root; no `postgres` "
                                        "system user to run the server as (Debian's postgresql "
                                        "package creates it)") from None
            self.as_user = "postgres"
        self.folder = Path(tempfile.mkdtemp(prefix="sdbench-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()

    def _run(self, *command: str) -> None:
        if self.as_user:
            command = ("runuser", "-u", self.as_user, "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if result.returncode:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise ServerUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()}\n{tail}")

    def start(self) -> "PostgresServer":
        if self.as_user:
            shutil.chown(self.folder, user=self.as_user)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        # fsync off: a test server's data is thrown away, and syncing only slows the tests down.
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "-t", str(START_TIMEOUT_S), "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
