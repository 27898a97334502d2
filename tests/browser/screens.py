"""Where browser tests save screenshots: the README's docs/screenshots/ only when asked to update them.

`make screenshots` (RANKLOOP_UPDATE_SCREENSHOTS=1) refreshes the README's pictures; an ordinary test run
writes to test-artifacts/ so that running the tests never dirties the work tree.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def screenshot_dir() -> Path:
    """For the pictures the README shows."""
    target = "docs" if os.environ.get("RANKLOOP_UPDATE_SCREENSHOTS") == "1" else "test-artifacts"
    path = ROOT / target / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifact_dir() -> Path:
    """For pictures kept only to look at after a run (never in the README, so never in docs/)."""
    path = ROOT / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
