"""Alembic environment: the URL comes from the app's settings (DATABASE_URL or the embedded server)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import database_url, sqlalchemy_url
from app.orm import Base

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(database_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(sqlalchemy_url(database_url()), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
