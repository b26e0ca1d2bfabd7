"""Database connection and schema migrations.

SQLite by default (one file, nothing to set up), PostgreSQL with a ``postgresql+psycopg://``
URL. The schema is created and upgraded only by the Alembic migrations shipped in
``dashboard/migrations``: ``serve`` and ``migrate`` apply them; extra ingest workers only check
that the database is current, so several processes never race to create tables.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from sarco_core.errors import SarcoError

DEFAULT_URL = "sqlite:///sarco-dashboard.db"
_MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(SarcoError, RuntimeError):
    """The database URL or the schema version is unusable; the message says how to fix it."""


def utc_now() -> datetime:
    """Naive UTC, the convention of every time column (see models)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` as psycopg 3 (the driver the dashboard depends on)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database URL {url!r} is not valid: use sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"database URL {url!r}: only SQLite and PostgreSQL are supported")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str = DEFAULT_URL) -> Engine:
    """An engine with the settings the ingest relies on: for SQLite WAL (the page reads while
    ingest writes), FULL sync (a result acknowledged to the broker survives a power cut) and
    a busy timeout (several ingest processes take turns writing)."""
    url = normalise_url(url)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(f"database URL {url!r}: driver missing ({exc}); "
                            "pip install 'psycopg[binary]' for PostgreSQL") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> str:
    """Upgrade the schema to ``revision`` (the newest migration by default); returns the
    revision the database is at."""
    command.upgrade(_alembic_config(engine), revision)
    return current_revision(engine) or "none"


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(None))
    return str(script.get_current_head())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse to run on a database that the migrations have not brought up to date."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseError(
            f"database {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{current or 'none'}, this version needs {head}: run `sarco-dashboard migrate "
            "--db URL` (or start `sarco-dashboard serve`, which migrates) first")


def dialect_insert(dialect: str):  # noqa: ANN201 - SQLAlchemy's insert construct
    """The INSERT with ON CONFLICT of the database in use (SQLite or PostgreSQL)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
