"""Domain errors that services raise; the app turns each into a clear 4xx."""

from __future__ import annotations


class AppError(Exception):
    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra


class Invalid(AppError):
    status_code = 422


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Forbidden(AppError):
    status_code = 403


class TooManyRequests(AppError):
    status_code = 429


class PayloadTooLarge(AppError):
    status_code = 413


class LoginRequired(AppError):
    status_code = 401
