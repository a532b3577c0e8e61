"""Opening the results database for reading, without ever creating one.

`open_database(create=False)` still lets SQLite create an empty file (and its folder) on first
connect, so a missing file is detected here first: looking at the leaderboard must not leave a
stray `results/leaderboard.db` behind that would then read as "empty".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from leaderboard.db import DatabaseError, check_schema, normalise_url, open_database
from leaderboard.models import SpeedComparison


class DatabaseStatus(Enum):
    MISSING = "missing"  # no file at the SQLite path
    EMPTY = "empty"  # a file or server database without any tables
    NO_RESULTS = "no results"  # our schema, but speed.py has not written a comparison yet
    READY = "ready"


@dataclass(frozen=True)
class ResultsDatabase:
    url: str
    status: DatabaseStatus
    sessions: sessionmaker | None = None  # set when the schema exists

    @property
    def display_url(self) -> str:
        """The URL without a password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def open_for_reading(url_or_path: str | None, factory=open_database) -> ResultsDatabase:
    """Classify the database; raises leaderboard.db.DatabaseError for one we cannot use.

    `factory` lets the app pass a cached `open_database` so reruns reuse one engine.
    """
    url = normalise_url(url_or_path)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return ResultsDatabase(url, DatabaseStatus.MISSING)
    sessions = factory(url, create=False)
    try:
        if not check_schema(sessions.kw["bind"]):
            return ResultsDatabase(url, DatabaseStatus.EMPTY)
        with sessions() as session:
            has_comparison = session.scalar(select(SpeedComparison.id).limit(1)) is not None
    except SQLAlchemyError as exc:  # the schema version matched but a table is not what we expect
        raise DatabaseError(f"cannot read results database {url!r}: {exc}") from exc
    status = DatabaseStatus.READY if has_comparison else DatabaseStatus.NO_RESULTS
    return ResultsDatabase(url, status, sessions)
