"""People and their credentials: users, API tokens, web sessions, login throttles."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, created_at_column, str_enum


class Role(enum.StrEnum):
    annotator = "annotator"
    admin = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "user_role"))
    # NULL for accounts that cannot log in (the "imported" annotator of outside judgements).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[dt.datetime] = created_at_column()
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # sha256 of the token: tokens are 256 random bits, so a fast hash is safe and lookups stay O(1).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = created_at_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """Server-side session: the signed cookie carries only a random id, so logout really revokes."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins under one key, in one row that an attempt locks before the password is checked.

    Keys: "user:<username>" (growing delays for that username, whatever the address) and
    "pair:<username>|<address>" (the hard block, for that username from that address only).
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
