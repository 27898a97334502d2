"""The Gold page: an admin marks an open set gold with its known ranking (places, equal ones tie), sees it
listed, and makes it an ordinary set again; full pages and htmx fragments, CSRF on every form."""

from __future__ import annotations

import re

from app.db import session_scope
from app.orm import ComparisonSet
from tests.conftest import csrf_from
from tests.factories import make_comparison_set, make_prompt


def _open_set(k: int = 3) -> tuple[int, list[int]]:
    with session_scope() as s:
        cset = make_comparison_set(s, make_prompt(s, text="Which reply is kindest?"), k=k)
        return cset.id, [i.candidate_id for i in cset.items]


def _gold_tiers(set_id: int) -> list[list[int]] | None:
    with session_scope() as s:
        cset = s.get(ComparisonSet, set_id)
        assert cset is not None
        return cset.gold_tiers


def test_an_admin_marks_a_set_gold_with_its_ranking_and_unmarks_it(admin):
    set_id, (a, b, c) = _open_set()
    listing = admin.get("/admin/gold")
    assert listing.status_code == 200
    assert f'data-open="{set_id}"' in listing.text and f"/admin/gold?set={set_id}" in listing.text
    form = admin.get(f"/admin/gold?set={set_id}")
    assert (
        form.status_code == 200
        and f'name="place-{a}"' in form.text
        and "Which reply is kindest?" in form.text
    )

    # No place is suggested: an untouched form must not turn the set's order into a known ranking.
    assert re.search(rf'name="place-{a}"[^>]*value=""', form.text)
    # C best, A and B tied below it.
    places = {f"place-{a}": "2", f"place-{b}": "2", f"place-{c}": "1"}
    marked = admin.post(
        f"/admin/gold/{set_id}", data={"csrf_token": csrf_from(form.text), **places}, follow_redirects=False
    )
    assert marked.status_code == 303 and marked.headers["location"] == f"/admin/gold?marked={set_id}"
    assert _gold_tiers(set_id) == [[c], sorted([a, b])]
    page = admin.get(marked.headers["location"]).text
    assert f'data-gold="{set_id}"' in page and "C &gt; A = B" in page and "data-notice" in page
    assert f'data-open="{set_id}"' not in page  # a gold set is no longer offered as an ordinary one
    # Editing it shows the known places.
    edit = admin.get(f"/admin/gold?set={set_id}").text
    assert re.search(rf'name="place-{c}"[^>]*value="1"', edit) and re.search(
        rf'name="place-{a}"[^>]*value="2"', edit
    )

    unmarked = admin.post(
        f"/admin/gold/{set_id}/unmark", data={"csrf_token": csrf_from(page)}, follow_redirects=False
    )
    assert unmarked.status_code == 303 and _gold_tiers(set_id) is None
    assert f'data-gold="{set_id}"' not in admin.get("/admin/gold").text


def test_a_bad_place_is_refused_naming_the_field_and_nothing_is_marked(admin):
    set_id, (a, b, c) = _open_set()
    token = csrf_from(admin.get("/admin/gold").text)
    for bad in ("0", "4", "x", ""):
        resp = admin.post(
            f"/admin/gold/{set_id}",
            data={"csrf_token": token, f"place-{a}": "1", f"place-{b}": bad, f"place-{c}": "3"},
        )
        assert resp.status_code == 422 and f"place-{b}" in resp.text, bad
    assert _gold_tiers(set_id) is None
    missing = admin.get("/admin/gold?set=999999")
    assert missing.status_code == 404 and "no comparison set 999999" in missing.text


def test_htmx_gets_fragments_and_forms_need_the_csrf_token(admin):
    set_id, (a, b) = _open_set(k=2)
    hx = {"HX-Request": "true"}
    frag = admin.get(f"/admin/gold?set={set_id}", headers=hx)
    assert frag.status_code == 200 and "<html" not in frag.text and 'id="gold-page"' in frag.text
    assert 'hx-post="/admin/gold/' in frag.text and 'name="csrf_token"' in frag.text
    places = {f"place-{a}": "1", f"place-{b}": "2"}
    assert admin.post(f"/admin/gold/{set_id}", data=places, follow_redirects=False).status_code == 403
    assert _gold_tiers(set_id) is None
    token = csrf_from(frag.text)
    done = admin.post(f"/admin/gold/{set_id}", data={"csrf_token": token, **places}, headers=hx)
    assert done.status_code == 200 and "<html" not in done.text and f"Set #{set_id} is gold." in done.text
    assert _gold_tiers(set_id) == [[a], [b]]
    again = admin.post(f"/admin/gold/{set_id}/unmark", data={"csrf_token": token}, headers=hx)
    assert again.status_code == 200 and "ordinary set again" in again.text and _gold_tiers(set_id) is None
