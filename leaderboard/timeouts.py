"""How long a database statement may wait for the server, and the watchdog that enforces it.

PostgreSQL's own ``statement_timeout`` is enforced by the server's backend process: a backend
that is stopped (SIGSTOP, a frozen VM, a hung disk) never enforces it, and TCP keepalives do not
notice either, because the server's kernel still acknowledges every packet. So the client bounds
each statement itself: while a statement (or a commit or rollback) is in flight on a connection,
a watchdog thread holds its deadline, and past it shuts the connection's socket down. The driver
then fails at once ("server closed the connection"); the transaction never committed, so the
server rolls it back whenever it runs again: nothing half-stored.

The bound is ``--db-timeout`` where a command has it, else the SDBENCH_DB_TIMEOUT environment
variable, else DEFAULT_DB_TIMEOUT_S.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

# No statement of ours takes long; one that does is waiting on something that will not come.
DEFAULT_DB_TIMEOUT_S = 60.0
TIMEOUT_ENV = "SDBENCH_DB_TIMEOUT"


class TimeoutSettingError(ValueError):
    """A timeout that is not a positive number of seconds; the message names where it came from."""


def parse_timeout(text: str, source: str) -> float:
    """Seconds from ``text``; ``source`` names the option or variable for the message."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise TimeoutSettingError(f"{source} {text!r}: must be a positive number of seconds")
    return value


def db_timeout(value: Optional[float] = None) -> float:
    """The statement bound: ``value`` (from an option) if given, else the environment's, else the default."""
    if value is not None:
        return parse_timeout(str(value), "--db-timeout")
    text = os.environ.get(TIMEOUT_ENV)
    return parse_timeout(text, TIMEOUT_ENV) if text else DEFAULT_DB_TIMEOUT_S


def add_db_timeout_option(parser) -> None:
    """``--db-timeout`` for a command that writes to or reads from the results database."""
    def seconds(text: str) -> float:
        try:
            return parse_timeout(text, "--db-timeout")
        except TimeoutSettingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--db-timeout", type=seconds, default=None, metavar="SECONDS",
                        help=f"seconds a database statement may wait for the server before the command "
                             f"stops with an error, nothing stored (default: ${TIMEOUT_ENV}, else "
                             f"{DEFAULT_DB_TIMEOUT_S:g})")


@dataclass
class Deadline:
    """One call in flight: when its socket is cut, and whether it was."""

    expires: float  # time.monotonic() seconds
    fd: int
    cut: bool = False


class Watchdog:
    """One thread for the whole process that cuts the socket of a call past its deadline."""

    def __init__(self):
        self._changed = threading.Condition()
        self._armed: dict[int, Deadline] = {}
        self._next = 0
        self._thread: Optional[threading.Thread] = None

    @contextmanager
    def bounded(self, fd: int, seconds: float):
        """Run the body with ``fd``'s socket cut after ``seconds``; yields its Deadline, whose
        ``cut`` says afterwards whether the watchdog cut it."""
        entry = Deadline(time.monotonic() + seconds, fd)
        with self._changed:
            token, self._next = self._next, self._next + 1
            self._armed[token] = entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="db-statement-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield entry
        finally:
            with self._changed:  # after this the fd may be closed and reused: never touched again
                self._armed.pop(token, None)

    def _watch(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for entry in self._armed.values():
                    if not entry.cut and entry.expires <= now:
                        entry.cut = True
                        _shut_down(entry.fd)
                pending = [e.expires for e in self._armed.values() if not e.cut]
                self._changed.wait(timeout=max(0.0, min(pending) - now) if pending else None)


def _shut_down(fd: int) -> None:
    """Shut the socket down under its owner: a read blocked on it returns at once."""
    try:
        with socket.socket(fileno=os.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its owner: nothing waits on it any more


WATCHDOG = Watchdog()
