"""The README's pictures and docs/screenshots/ are the same set, and each is written by a browser test, so
`make screenshots` refreshes every picture the README shows and leaves nothing else in docs/."""

from __future__ import annotations

import re

from tests.browser.screens import ROOT


def test_every_readme_picture_is_in_docs_and_written_by_a_browser_test():
    shown = set(re.findall(r"docs/screenshots/([\w.-]+\.png)", (ROOT / "README.md").read_text()))
    stored = {p.name for p in (ROOT / "docs" / "screenshots").glob("*.png")}
    assert shown == stored
    tests = "".join(p.read_text() for p in (ROOT / "tests" / "browser").glob("test_*.py"))
    assert {name for name in shown if f'"{name}"' not in tests} == set()
