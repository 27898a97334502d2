"""Typing and checking one round config value (app.training.config): text from the command line or JSON
from the API becomes the knob's type, within its range and choices, or a ConfigError naming the key.

Part of the training contract like app.training.config, and as import-light.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any


class ConfigError(ValueError):
    """A round config key or value is not acceptable; the message says which and why."""


_MODULE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def module_names(name: str, value: str) -> str:
    """A comma-separated list of module names, stored without spaces; "" is PEFT's default."""
    if not value.strip():
        return ""
    names = [n.strip() for n in value.split(",")]
    bad = [n for n in names if not _MODULE_NAME.fullmatch(n)]
    if bad:
        detail = "an empty name" if "" in bad else f"{bad[0]!r} is not a module name"
        raise ConfigError(
            f"{name} must be comma-separated module names such as q_proj,v_proj (or all-linear); "
            f"got {_show(value)}: {detail}"
        )
    if "all-linear" in names and len(names) > 1:
        raise ConfigError(f"{name}: all-linear stands alone, it already names every linear layer")
    return ",".join(names)


def _show(value: Any) -> str:
    """The offending value for an error message, cut short (it is echoed back to the client)."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(f: dataclasses.Field, value: Any) -> Any:
    """The value as the knob's type, within its range and choices, through its own check (ConfigError)."""
    typed = _coerce(f, value)
    lo, hi, choices = f.metadata["lo"], f.metadata["hi"], f.metadata["choices"]
    if choices and typed not in choices:
        raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {_show(value)}")
    if lo is not None and typed < lo:
        raise ConfigError(f"{f.name} must be at least {lo}; got {_show(value)}")
    if hi is not None and typed > hi:
        raise ConfigError(f"{f.name} must be at most {hi}; got {_show(value)}")
    if f.metadata["check"] is not None:
        typed = f.metadata["check"](f.name, typed)
    return typed


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = type(f.default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{f.name} must be true or false; got {_show(value)}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{f.name} must be a whole number; got {_show(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{f.name} must be a whole number; got {_show(value)}")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{f.name} must be a number; got {_show(value)}")
        if isinstance(value, int | float):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value)
            except ValueError:
                raise ConfigError(f"{f.name} must be a number; got {_show(value)}") from None
        else:
            raise ConfigError(f"{f.name} must be a number; got {_show(value)}")
        if result != result or result in (float("inf"), float("-inf")):
            raise ConfigError(f"{f.name} must be a finite number; got {_show(value)}")
        return result
    if not isinstance(value, str):
        raise ConfigError(f"{f.name} must be text; got {_show(value)}")
    if len(value) > 500:
        raise ConfigError(f"{f.name} is longer than 500 characters")
    return value
