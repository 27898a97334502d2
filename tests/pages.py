"""Every HTML page the admin dashboard serves, read from the app's route table, for tests that visit them all.

A page added later is visited by those tests without editing them: only its path parameters need a value.
"""

from __future__ import annotations

import re

from fastapi.responses import HTMLResponse
from fastapi.routing import iter_route_contexts


def admin_page_paths() -> list[str]:
    """Path templates ("/admin/rounds/{round_id}") of the admin's full pages (not fragments, not data)."""
    from app.main import create_app

    paths = set()
    for route in iter_route_contexts(create_app().routes):
        path = str(route.path or "")
        if not path.startswith("/admin") or "GET" not in (route.methods or ()):
            continue
        if getattr(route.route, "response_class", None) is not HTMLResponse or path.endswith("/progress"):
            continue
        paths.add(path)
    return sorted(paths)


def fill(path: str, values: dict[str, object]) -> str:
    """The concrete path: each {name} replaced by values[name] (a KeyError names a missing one)."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(values[m.group(1)]), path)
