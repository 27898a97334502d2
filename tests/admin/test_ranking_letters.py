"""Admin pages name a ranking's candidates by the letters its annotator saw, not by the set's stored order."""

from __future__ import annotations

import re

import pytest

from app.db import session_scope
from tests.admin_data import rank
from tests.factories import make_annotator, make_comparison_set

pytestmark = pytest.mark.usefixtures("fresh_stats")


def ranking_cell(html: str, ranking_id: int) -> str:
    row = re.search(rf'<tr data-ranking="{ranking_id}".*?</tr>', html, re.S)
    assert row, f"ranking {ranking_id} not on the page"
    return row.group(0)


def labels(row_html: str) -> list[str]:
    return re.findall(r'<span class="cand-label[^"]*"[^>]*>([^<]+)</span>', row_html)


def test_letters_follow_the_annotators_display_order_not_the_set_order(admin):
    with session_scope() as s:
        cset = make_comparison_set(s, texts=["first stored", "second stored", "third stored"])
        a, b, c = (i.candidate_id for i in cset.items)
        ann = make_annotator(s, "shuffled")
        # The annotator saw c, a, b as Responses A, B, C and put a (their B) first, then c (their A).
        shown = rank(s, cset, ann, [[a], [c], [b]], display_order=[c, a, b], flags={str(a): ["incorrect"]}).id
        # Old data: a display order that does not list the ranked candidates. No letter is guessed.
        old_set = make_comparison_set(s, k=2)
        x, y = (i.candidate_id for i in old_set.items)
        unknown = rank(s, old_set, ann, [[y], [x]], display_order=[]).id
        ann_id = ann.id
    html = admin.get("/admin/data/rankings").text
    row = ranking_cell(html, shown)
    assert labels(row) == ["B", "A", "C"]
    assert "B: incorrect" in row
    assert 'data-lettered="yes"' in row
    assert "letters as this annotator saw them" in html
    old = ranking_cell(html, unknown)
    assert 'data-lettered="no"' in old
    assert all(label.startswith("#") for label in labels(old))
    # The annotator's own page shows the same letters.
    page = admin.get(f"/admin/annotators/{ann_id}").text
    assert labels(ranking_cell(page, shown)) == ["B", "A", "C"]
    # No note on the page contradicts the header (it once said letters followed the set order).
    assert "set order" not in html


def test_a_tie_lists_its_letters_in_the_order_the_annotator_saw_them(admin):
    with session_scope() as s:
        cset = make_comparison_set(s, texts=["first stored", "second stored", "third stored"])
        a, b, c = (i.candidate_id for i in cset.items)
        # Shown as c, b, a (A, B, C); ranked their A = C above B, stored sorted by id: [[a, c], [b]].
        ranking = rank(s, cset, make_annotator(s), [[a, c], [b]], display_order=[c, b, a]).id
    row = ranking_cell(admin.get("/admin/data/rankings").text, ranking)
    assert labels(row) == ["A", "C", "B"]
