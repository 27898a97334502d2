"""Reading a task on the ranking page, at a desktop and a phone size: the page opens at its top with the
first response focused, model Markdown is rendered (code monospace and scrolling in its box, tables, safe
links) with a remembered "show source", and a reply cut at the length limit is marked."""

from __future__ import annotations

import pytest

from app.db import session_scope
from tests.browser.conftest import DESKTOP, PHONE, card_ids, log_in, watch
from tests.browser.screens import screenshot_dir
from tests.factories import (
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


# Long enough, like the demo's prompts, that the first response starts near the fold: focusing it with a
# scroll would hide the prompt's start and the progress counter.
PROMPT = (
    "Write a **Python** function that parses `key=value` lines.\n"
    "It should:\n\n- ignore blank lines\n- strip whitespace\n- raise on a line without `=`\n\n"
    + "Some background on the file format, which comes from an old tool we still use every day. " * 8
    + "\n\n"
    + "An example of a file, with the edge cases we have seen in practice over the years. " * 6
)
CODE = (
    "Here is one:\n\n```python\ndef parse(text: str) -> dict[str, str]:\n"
    "    result = {}\n    for line in text.splitlines():\n"
    "        if not line.strip():\n            continue\n"
    "        key, sep, value = line.partition('=')  # a deliberately long comment that runs past the box\n"
    "        if not sep:\n            raise ValueError(f'no = in {line!r}')\n"
    "        result[key.strip()] = value.strip()\n    return result\n```"
)
TABLE = (
    "| input | result |\n|---|---|\n| `a=1` | `{'a': '1'}` |\n| `b` | ValueError |\n\n"
    "See [the docs](https://docs.python.org/3/library/stdtypes.html#str.partition)."
)
CUT = "Use a regular expression:\n\n" + "The pattern matches any key and value; " * 40 + "and then the"


def _seed() -> dict[str, int]:
    with session_scope() as s:
        ps = make_prompt_set(s, "code")
        mv = make_model_version(s, "policy-v1")
        prompt = make_prompt(s, ps, PROMPT)
        cands = make_candidates(s, prompt, [CODE, TABLE, CUT], model_version=mv)
        cands[2].truncated = True
        make_comparison_set(s, prompt, candidates=cands, overlap=1)
        return {"code": cands[0].id, "table": cands[1].id, "cut": cands[2].id}


def _in_view(page, selector: str) -> bool:
    return bool(
        page.eval_on_selector(
            selector,
            "el => { const r = el.getBoundingClientRect();"
            " return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }",
        )
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_page_opens_at_its_top_and_renders_model_markdown(live_server, chromium, make_user, viewport):
    ids = _seed()
    name, password = make_user("reader")
    phone = viewport is PHONE
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, live_server, name, password)
    page.wait_for_selector("#task[data-ready='1']")
    page.wait_for_load_state("networkidle")

    # At its top: the progress counter and the prompt's start in view, the first response focused for the
    # keys without the page having scrolled to it.
    assert page.evaluate("window.scrollY") == 0
    assert page.evaluate("document.activeElement.dataset.id") == str(card_ids(page)[0])
    assert _in_view(page, "[data-progress]") and _in_view(page, ".prompt h2")

    # Markdown rendered: emphasis, lists, code in a monospace box that scrolls sideways, tables, safe links.
    assert page.inner_text(".prompt-text strong") == "Python"
    assert page.locator(".prompt-text li").count() == 3
    code = f".cand[data-id='{ids['code']}'] pre"
    assert "monospace" in page.eval_on_selector(code, "el => getComputedStyle(el).fontFamily")
    assert page.eval_on_selector(code, "el => getComputedStyle(el).overflowX") == "auto"
    assert page.locator(f".cand[data-id='{ids['table']}'] table td").count() == 4
    link = page.locator(f".cand[data-id='{ids['table']}'] .md a")
    assert set(link.get_attribute("rel").split()) >= {"noopener", "nofollow"}
    assert link.get_attribute("target") == "_blank"
    # Nothing widens the page past the screen (a phone would zoom out): long code lines and tables scroll
    # in their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    # Only the reply cut at the length limit is marked, on its header where it is seen without opening it.
    marks = page.locator("[data-truncated]")
    assert marks.count() == 1 and marks.is_visible()
    assert page.locator(f".cand[data-id='{ids['cut']}'] [data-truncated]").count() == 1

    # "Show source" shows what the model wrote, for every text, and is remembered on the next page load.
    assert not page.locator(".prompt .source").is_visible()
    page.click("[data-toggle-source]")
    assert page.locator(".prompt .source").is_visible() and not page.locator(".prompt-text").is_visible()
    assert "```python" in page.inner_text(f".cand[data-id='{ids['code']}'] .source")
    page.reload()
    page.wait_for_selector("#task[data-ready='1']")
    assert page.get_attribute("[data-toggle-source]", "aria-pressed") == "true"
    assert "**Python**" in page.inner_text(".prompt .source")
    page.click("[data-toggle-source]")
    assert page.locator(".prompt-text").is_visible()
    if phone:
        # The README's phone picture: the responses (a tie made by taps, the cut-off mark, a table and code)
        # under the live summary, one screen down the page.
        for cid, rank in zip(card_ids(page), (1, 1, 2), strict=True):
            page.locator(f".cand[data-id='{cid}'] [data-set-rank='{rank}']").tap()
        assert page.inner_text("#tier-summary").split() == ["A", "=", "B", "≻", "C"]
        page.evaluate("window.scrollTo(0, document.querySelector('#candidates').offsetTop - 90)")
        page.screenshot(path=str(screenshot_dir() / "ranking-phone.png"))
    assert watched.errors == [] and watched.csp_violations == []
    context.close()
