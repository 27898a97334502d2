"""The admin dashboard's one router: every page module's routes, all under /admin and for admins only.

Each page's URL serves the full page, or its main fragment to htmx; every chart's data is also served as
CSV or JSON (`.csv` / `.json` URLs). app/main.py mounts this router.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.admin import (
    annotators,
    data,
    generation,
    gold,
    import_export,
    leaderboard,
    models,
    overview,
    projects,
    quality,
    rounds,
    users,
)

router = APIRouter()
for page in (
    overview,
    projects,
    import_export,
    generation,
    rounds,
    models,
    leaderboard,
    annotators,
    users,
    data,
    quality,
    gold,
):
    router.include_router(page.router)
