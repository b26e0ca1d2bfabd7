"""Alembic environment: run by dashboard.db.migrate with the engine in the config attributes
(no alembic.ini: the migrations ship inside the package)."""

from alembic import context

from dashboard.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    context.run_migrations()
