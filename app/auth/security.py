"""Credential primitives: argon2 password hashes, random tokens and their digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_password_hash = PasswordHash((Argon2Hasher(),))
# Verifying against this when the user does not exist keeps response time from revealing usernames.
_DUMMY_HASH = _password_hash.hash(secrets.token_urlsafe(16))

API_TOKEN_PREFIX = "rl_"  # noqa: S105 - a public prefix, not a secret


def hash_password(password: str) -> str:
    return _password_hash.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _password_hash.verify(password, _DUMMY_HASH)
        return False
    return _password_hash.verify(password, password_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def generate_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def generate_session_id() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """sha256 hex: enough for 256-bit random tokens, which cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
