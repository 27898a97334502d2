"""Apply Alembic migrations programmatically (CLI `rankloop db upgrade`, the demo, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.web import ROOT


def alembic_config() -> Config:
    cfg = Config(toml_file=str(ROOT / "pyproject.toml"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


def upgrade(revision: str = "head") -> None:
    """Migrate the configured database to `revision`."""
    command.upgrade(alembic_config(), revision)
