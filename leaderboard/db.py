"""Opening the results database: default location, schema creation, schema version check."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from leaderboard.models import SCHEMA_VERSION, Base, SchemaInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
# The evaluators write here and the app reads here unless --db (or SDBENCH_DB) says otherwise.
DEFAULT_DB_PATH = REPO_ROOT / "results" / "leaderboard.db"


class DatabaseError(RuntimeError):
    """A database that cannot be used as it is (old schema, not our database, unreachable)."""


def default_db_url() -> str:
    return os.environ.get("SDBENCH_DB") or f"sqlite:///{DEFAULT_DB_PATH}"


def normalise_url(url_or_path: "str | Path | None") -> str:
    """Accept a SQLAlchemy URL or a plain file path."""
    if not url_or_path:
        return default_db_url()
    url_or_path = str(url_or_path)
    if "://" in url_or_path:
        return url_or_path
    return f"sqlite:///{Path(url_or_path).expanduser().resolve()}"


def _make_engine(url: str, create: bool) -> Engine:
    if create and url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, future=True)


def check_schema(engine: Engine) -> bool:
    """True if the database has our current schema, False if it is empty; raises otherwise."""
    tables = set(inspect(engine).get_table_names())
    if not tables:
        return False
    if "schema_info" not in tables:
        raise DatabaseError(
            f"{engine.url!r} is not a results database of this project (no schema_info table)"
        )
    with Session(engine) as session:
        row = session.scalar(select(SchemaInfo).where(SchemaInfo.key == "schema_version"))
    found = int(row.value) if row is not None else None
    if found != SCHEMA_VERSION:
        raise DatabaseError(
            f"results database {engine.url!r} has schema version {found}, this code needs "
            f"{SCHEMA_VERSION}; move the old file away (or point --db elsewhere) and re-import "
            f"the answer files with speed.py / equal.py"
        )
    return True


def open_database(url_or_path: str | None = None, create: bool = True) -> sessionmaker:
    """A session factory for the database; creates the schema in an empty database if asked."""
    url = normalise_url(url_or_path)
    try:
        engine = _make_engine(url, create)
        has_schema = check_schema(engine)
    except DatabaseError:
        raise
    except Exception as exc:  # unreachable server, corrupt file, ...
        raise DatabaseError(f"cannot open results database {url!r}: {exc}") from exc
    if not has_schema and create:
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            session.add(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))
    return sessionmaker(engine, future=True)
