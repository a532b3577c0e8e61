"""Opening the results database: default location, driver and timeouts, schema creation, schema
version check and in-place upgrade of an older schema.

Every connection gets timeouts, so a server that accepts the connection and never answers is an
error within seconds rather than a hang. Creating the schema is one transaction that first takes
the database's write lock, so two first imports into a fresh database both land: the second one
waits for the first, then finds the schema made.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import sessionmaker

from leaderboard.models import SCHEMA_VERSION, Base, SchemaInfo
from leaderboard.timeouts import TIMEOUT_ENV, WATCHDOG, db_timeout
from methods.core.paths import REPO_ROOT

# The evaluators write here and the app reads here unless --db (or SDBENCH_DB) says otherwise.
DEFAULT_DB_PATH = REPO_ROOT / "results" / "leaderboard.db"

# A server that does not complete the connection handshake within this is unreachable.
CONNECT_TIMEOUT_S = 5
# How long SQLite waits for another writer's lock (an import in progress) before giving up.
SQLITE_LOCK_TIMEOUT_S = 30
# The driver used for postgresql:// URLs that name none (the one requirements.txt installs).
POSTGRESQL_DRIVER = "psycopg"
# Execution option read by the SQLite "begin" hook below: the statement that opens a transaction.
SQLITE_BEGIN = "sqlite_begin"
# Arbitrary key of the PostgreSQL advisory lock that serialises schema creation.
_SCHEMA_LOCK_KEY = 0x5DBE
# Execution option read by the PostgreSQL "begin" hook below: take the importers' lock first.
POSTGRESQL_WRITE_LOCK = "postgresql_write_lock"
# Arbitrary key of the PostgreSQL advisory lock that serialises importers (see writing()).
_WRITE_LOCK_KEY = 0x5DBF


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


def _with_driver(url: str) -> str:
    """postgresql:// (and Heroku-style postgres://) without a driver means psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return f"postgresql+{POSTGRESQL_DRIVER}://" + url[len(prefix):]
    return url


def _connect_args(backend: str, timeout: float) -> dict:
    connect = max(2, math.ceil(min(CONNECT_TIMEOUT_S, timeout)))  # libpq takes whole seconds, 2 at least
    if backend == "sqlite":
        return {"timeout": SQLITE_LOCK_TIMEOUT_S}
    if backend == "postgresql":
        # The server's own bound and TCP keepalives (a peer that vanished); a stopped server
        # ignores both, so _bound_every_call adds the client's.
        return {"connect_timeout": connect, "options": f"-c statement_timeout={math.ceil(timeout * 1000)}",
                "keepalives": 1, "keepalives_idle": connect, "keepalives_interval": connect,
                "keepalives_count": 3}
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": connect, "read_timeout": math.ceil(timeout)}
    return {}


_BOUNDED_CALLS = ("do_execute", "do_executemany", "do_execute_no_params", "do_commit", "do_rollback")


def _bound_every_call(engine: Engine, timeout: float) -> None:
    """Every statement, commit and rollback of this engine fails after ``timeout`` seconds without
    an answer, even from a server that is stopped (leaderboard/timeouts.py says why the server's
    statement_timeout is not enough)."""
    dialect = engine.dialect
    dbapi = dialect.dbapi

    def bounded(call, on_cursor: bool):
        def run(cursor_or_connection, *args, **kwargs):
            connection = cursor_or_connection.connection if on_cursor else cursor_or_connection
            with WATCHDOG.bounded(connection.fileno(), timeout) as entry:
                try:
                    return call(cursor_or_connection, *args, **kwargs)
                except dbapi.Error as exc:
                    if not entry.cut:
                        raise
                    raise dbapi.OperationalError(
                        f"no answer from the database server within {timeout:g} s (stopped or "
                        f"overloaded?); nothing of this transaction is stored; set the bound with "
                        f"--db-timeout or {TIMEOUT_ENV}") from exc
        return run

    for name in _BOUNDED_CALLS:  # this engine's own dialect instance: no other engine is touched
        setattr(dialect, name, bounded(getattr(dialect, name), on_cursor=name.startswith("do_execute")))


def _use_explicit_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, open transactions (SQLAlchemy's documented
    recipe): the sqlite3 module runs DDL outside any transaction, which would split the schema
    creation, and it cannot open a transaction with BEGIN IMMEDIATE (take the write lock first)."""

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection):
        connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))


def _take_postgresql_write_lock(engine: Engine) -> None:
    """A transaction opened through writing() first waits for the importers' advisory lock
    (released at its commit or rollback), as SQLite's BEGIN IMMEDIATE waits for the file lock."""

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection):
        if connection.get_execution_options().get(POSTGRESQL_WRITE_LOCK):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK_KEY})")


def _make_engine(url: str, create: bool, timeout: float) -> Engine:
    url = _with_driver(url)
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL or file path: {url!r} ({exc})") from None
    if create and backend == "sqlite" and url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, connect_args=_connect_args(backend, timeout))
    except ModuleNotFoundError as exc:
        raise DatabaseError(f"the database driver for {backend} is not installed ({exc}); for "
                            f"PostgreSQL: pip install 'psycopg[binary]'") from None
    if backend == "sqlite":
        _use_explicit_sqlite_transactions(engine)
    elif backend == "postgresql":
        _take_postgresql_write_lock(engine)
        _bound_every_call(engine, timeout)
    return engine


def writing(engine_or_sessions: "Engine | sessionmaker") -> Engine:
    """The engine whose transactions take the write lock as they open (SQLite: BEGIN IMMEDIATE).

    A read-then-write transaction that starts as a reader can deadlock against another writer;
    SQLite then fails one of them at once instead of waiting. Taking the lock first makes the
    second writer wait its turn (up to SQLITE_LOCK_TIMEOUT_S). PostgreSQL locks per row, so two
    importers of a shared file (one baseline for two methods) would both find its run missing
    and both insert it, and one would fail on the unique key: there an advisory lock makes the
    second importer wait for the first to commit, then find the run (up to the statement
    timeout).
    """
    engine = engine_or_sessions
    if isinstance(engine, sessionmaker):
        engine = engine.kw["bind"]
    return engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE", POSTGRESQL_WRITE_LOCK: True})


# In-place upgrades, so that what a database holds survives a schema change: version -> the
# statements that bring it to the next version. An older version without a path here must be
# re-imported.
UPGRADES: dict[int, tuple[str, ...]] = {
    4: ("ALTER TABLE speed_comparisons ADD COLUMN device_name VARCHAR(256)",),
    5: ("ALTER TABLE runs ADD COLUMN native_code VARCHAR(256)",
        "ALTER TABLE speed_comparisons ADD COLUMN question_set VARCHAR(64)"),
    # Rows imported before stay without them (the app says so) until their runs are imported again.
    6: ("ALTER TABLE runs ADD COLUMN num_threads VARCHAR(64)",
        "ALTER TABLE answers ADD COLUMN question_turns JSON",
        "ALTER TABLE answers ADD COLUMN token_pieces JSON"),
}


def _stored_version(connection: Connection, url) -> int | None:
    """The database's schema version; None if it is empty; raises if it is not ours."""
    tables = set(inspect(connection).get_table_names())
    if not tables:
        return None
    if "schema_info" not in tables:
        raise DatabaseError(
            f"{url!r} is not a results database of this project (no schema_info table)"
        )
    value = connection.scalar(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version"))
    return int(value) if value is not None else -1


def upgradable(found: int | None) -> bool:
    return found is not None and 0 <= found < SCHEMA_VERSION and all(
        v in UPGRADES for v in range(found, SCHEMA_VERSION))


def _schema_state(connection: Connection, url) -> bool:
    """True if the database has our current schema, False if it is empty; raises otherwise."""
    found = _stored_version(connection, url)
    if found is None:
        return False
    if found > SCHEMA_VERSION:  # not "old": an older checkout must neither touch nor misread it
        raise DatabaseError(f"results database {url!r} has schema version {found}, newer than this code's "
                            f"{SCHEMA_VERSION}: it was written by a newer version of this project; update "
                            f"this checkout (git pull) to read or write it, or point --db at another database")
    if found != SCHEMA_VERSION:
        advice = ("; speed.py and equal.py upgrade it in place (nothing stored is lost) when they next "
                  "write to it" if upgradable(found) else
                  "; move the old file away (or point --db elsewhere) and re-import the answer files with "
                  "speed.py / equal.py")
        raise DatabaseError(f"results database {url!r} has schema version {found}, this code needs "
                            f"{SCHEMA_VERSION}{advice}")
    return True


def check_schema(engine: Engine) -> bool:
    """True if the database has our current schema, False if it is empty; raises otherwise."""
    with engine.connect() as connection:
        return _schema_state(connection, engine.url)


def upgrade_schema(engine: Engine) -> None:
    """Bring an older schema up to date in one transaction holding the write lock (a concurrent
    upgrader waits, then finds it done)."""
    with writing(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        found = _stored_version(connection, engine.url)
        if found == SCHEMA_VERSION or not upgradable(found):
            return  # done by someone else, or not ours to upgrade (check_schema says why)
        for version in range(found, SCHEMA_VERSION):
            for statement in UPGRADES[version]:
                connection.exec_driver_sql(statement)
        connection.execute(SchemaInfo.__table__.update().where(SchemaInfo.key == "schema_version")
                           .values(value=str(SCHEMA_VERSION)))


def create_schema(engine: Engine) -> None:
    """Create the tables and record the version, in one transaction holding the write lock, so
    a concurrent creator waits and then finds the schema complete (or nothing at all)."""
    with writing(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        if _schema_state(connection, engine.url):
            return  # made by someone else while we waited for the lock
        Base.metadata.create_all(connection)
        connection.execute(SchemaInfo.__table__.insert().values(key="schema_version",
                                                                value=str(SCHEMA_VERSION)))


def failure_reason(exc: BaseException) -> str:
    """The driver's own message (e.g. "connection timeout expired"), without SQLAlchemy's
    statement dump and background link."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip() or type(exc.orig).__name__
    return str(exc).strip() or type(exc).__name__


def open_database(url_or_path: str | None = None, create: bool = True,
                  timeout: float | None = None) -> sessionmaker:
    """A session factory for the database; creates the schema in an empty database if asked.
    ``timeout``: seconds a statement may wait for the server (None: SDBENCH_DB_TIMEOUT, else 60)."""
    url = normalise_url(url_or_path)
    try:
        timeout = db_timeout(timeout)
    except ValueError as exc:
        raise DatabaseError(str(exc)) from None
    engine = _make_engine(url, create, timeout)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if create:
            with engine.connect() as connection:
                found = _stored_version(connection, engine.url)
            if found != SCHEMA_VERSION and upgradable(found):
                upgrade_schema(engine)
        has_schema = check_schema(engine)
        if not has_schema and create:
            create_schema(engine)
    except DatabaseError:
        engine.dispose()
        raise
    except Exception as exc:  # unreachable server, corrupt file, ...
        engine.dispose()
        raise DatabaseError(f"cannot open results database {shown!r}: {failure_reason(exc)}") from None
    return sessionmaker(engine)
