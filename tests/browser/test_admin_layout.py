"""Every admin page fits a phone (390x844) and a laptop (1366x900): nothing makes the page scroll sideways.

Wide tables scroll inside their own box, the navigation wraps, forms and charts take the width there is.
The pages come from the app's route table (tests/pages.py), filled with a realistic history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from app.db import session_scope
from app.orm import Role, Round, RoundKind, RoundStatus
from tests.admin_data import random_loop, rank
from tests.browser.conftest import log_in, watch
from tests.browser.screens import screenshot_dir
from tests.factories import make_annotator, make_candidates, make_comparison_set, make_prompt, make_prompt_set
from tests.pages import admin_page_paths, fill

pytestmark = [pytest.mark.slow, pytest.mark.browser]

VIEWPORTS = [(390, 844), (1366, 900)]
LONG_WORD = "https://example.org/" + "a-very-long-path-segment/" * 8  # no break opportunity but its own
# Model Markdown with a code line far wider than a phone: its box scrolls, the page must not.
CODE = "Like this:\n\n```python\nresult = parse(text)  # " + "a comment that runs on and on " * 6 + "\n```"

# The elements that stick out past the right edge, to say what to fix when the test fails.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
  const inScroller = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) if (scrolls(p)) return true;
    return false;
  };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 && r.width > 0 && !inScroller(el)) {
      const named = typeof el.className === 'string' && el.className;
      const cls = named ? '.' + el.className.split(' ').join('.') : '';
      out.push(el.tagName.toLowerCase() + cls + ' ' + Math.round(r.right));
    }
  }
  return out.slice(0, 6);
}"""


# Chart labels on screen outside these sizes: a chart drawn 1100 units wide, squeezed onto a phone, had 3 px
# ones; a lone 360-unit loss chart stretched across a laptop had 37 px ones.
MIN_LABEL_PX, MAX_LABEL_PX = 7.5, 20
ODD_LABELS = """([low, high]) => {
  const out = [];
  for (const t of document.querySelectorAll('svg.chart text')) {
    const px = parseFloat(getComputedStyle(t).fontSize) * t.ownerSVGElement.getScreenCTM().a;
    if (px < low || px > high) out.push(`${t.textContent.trim()} ${px.toFixed(1)}px`);
  }
  return out.slice(0, 3);
}"""


def seed_history() -> dict[str, Any]:
    """Rankings across four versions, flags, a long prompt and a finished round: every page has rows."""
    with session_scope() as s:
        loop = random_loop(s, sets=16, annotators=3)
        ps = make_prompt_set(s, "a-prompt-set-with-a-rather-long-name-for-a-phone")
        prompt = make_prompt(s, ps, "A long prompt with a link " + LONG_WORD + " " + "and words " * 60)
        cands = make_candidates(s, prompt, [LONG_WORD, "short " * 80, CODE], model_version=loop.versions[0])
        # The Compare page shows both versions' replies to this prompt side by side.
        make_candidates(s, prompt, [CODE], model_version=loop.versions[-1])
        cset = make_comparison_set(s, prompt, candidates=cands)
        who = make_annotator(s, "annotator-with-a-long-username")
        rank(
            s,
            cset,
            who,
            [[cands[0].id], [cands[1].id], [cands[2].id]],
            flags={str(cands[0].id): ["unsafe"], str(cands[2].id): ["incorrect"]},
        )
        now = dt.datetime.now(dt.UTC)
        row = Round(
            kind=RoundKind.train,
            status=RoundStatus.succeeded,
            trigger="manual",
            config={"policy_lr": 5e-5, "base_model": LONG_WORD},
            stage="done",
            step=120,
            total=120,
            loss=0.41,
            loss_curve=[["reward", i, 0.69 - 0.003 * i] for i in range(1, 80, 4)],
            log_tail=["stage reward " + LONG_WORD] * 5,
            metrics={"winrate_vs_parent": 0.56, "reward_heldout_accuracy": 0.61},
            attempts=1,
            created_at=now,
            started_at=now,
            finished_at=now,
        )
        s.add(row)
        s.flush()
        return {
            "round_id": row.id,
            "user_id": loop.annotators[0].id,
            "project_id": row.project_id,
            "compare": f"?a={loop.versions[-1].id}&b={loop.versions[0].id}",
            "set_id": cset.id,  # its long candidates in the Gold page's marking form
        }


def test_every_admin_page_fits_a_phone_and_a_laptop(live_server, chromium, make_user):
    ids = seed_history()
    name, pw = make_user("admin-person", Role.admin)
    paths = [fill(p, ids) for p in admin_page_paths()]
    paths += ["/admin/models/compare" + ids["compare"], f"/admin/gold?set={ids['set_id']}", "/"]
    shots = screenshot_dir()
    wide: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for width, height in VIEWPORTS:
        context = chromium.new_context(viewport={"width": width, "height": height})
        watched = watch(context.new_page())
        page = watched.page
        log_in(page, live_server, name, pw, "/admin")
        for path in paths:
            response = page.goto(live_server + path)
            assert response is not None and response.status == 200, path
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > width:
                wide[f"{path} at {width}px: {scroll_width}px"] = page.evaluate(OVERFLOWING)
            odd = page.evaluate(ODD_LABELS, [MIN_LABEL_PX, MAX_LABEL_PX])
            if odd:
                labels[f"{path} at {width}px"] = odd
        if width == 390:
            page.goto(live_server + "/admin/annotators")
            page.screenshot(path=str(shots / "admin-phone.png"), full_page=True)
        assert watched.errors == [] and watched.csp_violations == []
        context.close()
    assert wide == {}, "\n".join(f"{k}: {v}" for k, v in wide.items())
    assert labels == {}, "chart labels too small or too large:\n" + "\n".join(
        f"{k}: {v}" for k, v in labels.items()
    )


def test_the_page_list_covers_every_section_of_the_admin_nav():
    # The route table, not a hand-kept list, decides what the layout test visits.
    paths = admin_page_paths()
    for section in ("rounds", "models", "leaderboard", "annotators", "users", "data", "quality", "import"):
        assert f"/admin/{section}" in paths
    assert "/admin/rounds/{round_id}" in paths and "/admin/quality/consensus" in paths
