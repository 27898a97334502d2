"""Plain rows on the annotation hot path, and their way back into the session as ORM objects.

The hot statements (next task, submit) run on the session's connection and return plain rows: the ORM's
result machinery (entity loading, identity map checks, populate_existing) cost more CPU than the
statements themselves. Where callers want ORM objects (an assignment to change, a ranking to answer
with), `attach` makes one from the row and adds it to the session as if it had been loaded: no query,
and later changes to it flush as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import set_committed_value

from app.db import persistent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LockedSet:
    """A comparison set whose row lock this transaction holds: what the hand-out and submission need."""

    id: int
    overlap: int
    status: str


@dataclass(frozen=True, slots=True)
class CandidateView:
    """A candidate as a task shows it."""

    id: int
    text: str
    truncated: bool
    hidden: bool  # hidden candidates are never shown: False for every candidate of a task


@cache
def _keys(cls: type) -> list[str]:
    mapper: Mapper[Any] = inspect(cls)
    return [prop.key for prop in mapper.column_attrs]


def columns_of(cls: type) -> list[ColumnElement[Any]]:
    """Every mapped column of an ORM class, named by its attribute."""
    return [getattr(cls, key).label(key) for key in _keys(cls)]


def labelled(cls: type, prefix: str) -> list[ColumnElement[Any]]:
    """Every mapped column of an ORM class, named `prefix` + attribute (for rows joining several)."""
    return [getattr(cls, key).label(prefix + key) for key in _keys(cls)]


def unlabelled(values: Mapping[Any, Any], cls: type, prefix: str) -> dict[str, Any]:
    """The `labelled(cls, prefix)` columns of a row, by attribute name."""
    return {key: values[prefix + key] for key in _keys(cls)}


def attach(session: Session, cls: type[T], values: Mapping[Any, Any], only_if_present: bool = False) -> T:
    """The object of `cls` with these column values as a persistent object of the session, as a query
    with populate_existing would leave it: the session's copy updated if it has one, else a new one.

    `values` must hold the primary key `id`; columns not given stay as they are (a new object: unloaded).
    With `only_if_present`, nothing is created: only a copy the session already holds is updated.
    """
    mapper = inspect(cls)
    existing = session.identity_map.get(mapper.identity_key_from_primary_key((values["id"],)))
    if existing is not None:
        for key, value in values.items():
            set_committed_value(existing, key, value)
        return existing
    if only_if_present:
        return None  # type: ignore[return-value]
    obj: T = persistent(session, mapper, values)
    return obj
