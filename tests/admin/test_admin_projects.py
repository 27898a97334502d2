"""The Projects pages: the cross-project overview, creating a project, editing its guidelines, flag types,
settings, schedule and members; the ranking page then shows that project's guidelines and flags."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.db import session_scope
from app.orm import Project, ProjectMember, User
from tests.admin_data import rank
from tests.conftest import csrf_from, login
from tests.factories import (
    make_comparison_set,
    make_model_version,
    make_project,
    make_prompt,
    make_prompt_set,
)


def test_the_overview_shows_each_projects_open_work_rankings_and_active_policy(admin):
    with session_scope() as s:
        alpha, beta = make_project(s, "alpha"), make_project(s, "beta")
        for project, n in ((alpha, 2), (beta, 1)):
            ps = make_prompt_set(s, f"{project.name}-prompts", project=project)
            for _ in range(n):
                make_comparison_set(s, make_prompt(s, ps))
        make_model_version(s, "alpha-policy", project=alpha)
        person = s.scalars(select(User).where(User.username == "root")).one()
        cset = make_comparison_set(s, make_prompt(s, make_prompt_set(s, "beta-more", project=beta)), k=2)
        rank(s, cset, person, [[c.candidate_id] for c in cset.items])
        ids = {"alpha": alpha.id, "beta": beta.id}
    page = admin.get("/admin/projects").text

    def cell(project: str, name: str) -> str:
        row = re.search(rf'data-project="{ids[project]}">(.*?)</tr>', page, re.S)
        assert row is not None
        found = re.search(rf"data-{name}>(.*?)</td>", row.group(1), re.S)
        assert found is not None
        return found.group(1).strip()

    assert (cell("alpha", "open-sets"), cell("beta", "open-sets")) == ("2", "2")
    assert (cell("alpha", "rankings"), cell("beta", "rankings")) == ("0", "1")
    assert cell("alpha", "active-policy") == "alpha-policy"
    assert "none yet" in cell("beta", "active-policy")
    assert "default" in page  # where data without a project goes


def test_an_admin_creates_a_project_and_sets_its_guidelines_flags_schedule_and_members(admin, make_user):
    make_user("ann")
    page = admin.get("/admin/projects")
    made = admin.post(
        "/admin/projects",
        data={"name": "Summaries", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert made.status_code == 303
    url = made.headers["location"]
    form = admin.get(url)
    assert form.status_code == 200 and "Summaries" in form.text
    with session_scope() as s:
        ann = s.scalars(select(User).where(User.username == "ann")).one()
    saved = admin.post(
        url,
        data={
            "csrf_token": csrf_from(form.text),
            "name": "Summaries",
            "guidelines": "Prefer **faithful** summaries.\r\n\r\n- no new facts",
            "flag_types": "hallucination, too-long",
            "k_min": "2",
            "k_max": "3",
            "overlap": "3",
            "lease_minutes": "",
            "schedule_min_rankings": "50",
            "schedule_cron": "0 3 * * 1",
            "member": [str(ann.id)],
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    with session_scope() as s:
        project = s.scalars(select(Project).where(Project.name == "Summaries")).one()
        assert project.guidelines == "Prefer **faithful** summaries.\n\n- no new facts"
        assert project.flag_types == ["hallucination", "too-long"]
        assert (project.k_min, project.k_max, project.overlap, project.lease_minutes) == (2, 3, 3, None)
        assert (project.schedule_min_rankings, project.schedule_cron) == (50, "0 3 * * 1")
        members = set(s.scalars(select(ProjectMember.user_id).where(ProjectMember.project_id == project.id)))
        assert members == {ann.id}
        ps = make_prompt_set(s, "summaries", project=project)
        make_comparison_set(s, make_prompt(s, ps, "Summarise the tides."), k=3)
    bad = admin.post(
        url, data={"csrf_token": csrf_from(form.text), "name": "Summaries", "schedule_cron": "weekly-ish"}
    )
    assert bad.status_code == 422 and "schedule_cron" in bad.text

    # The annotator's ranking page: this project's guidelines, rendered, and its flags.
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as annotator:
        login(annotator, "ann", "correct-horse-1")
        rank_page = annotator.get("/").text
    assert "<strong>faithful</strong>" in rank_page
    assert 'value="' in rank_page and ":hallucination" in rank_page and ":unsafe" not in rank_page


def test_the_admin_home_shows_the_chosen_projects_figures_and_the_projects_side_by_side(admin):
    with session_scope() as s:
        alpha, beta = make_project(s, "alpha"), make_project(s, "beta")
        person = s.scalars(select(User).where(User.username == "root")).one()
        for project, sets, ranked in ((alpha, 3, 2), (beta, 1, 1)):
            ps = make_prompt_set(s, f"{project.name}-prompts", project=project)
            for i in range(sets):
                cset = make_comparison_set(s, make_prompt(s, ps), k=2)
                if i < ranked:
                    rank(s, cset, person, [[c.candidate_id] for c in cset.items])
        make_model_version(s, "beta-policy", project=beta)
        ids = {"alpha": alpha.id, "beta": beta.id}

    def count(html: str, name: str) -> str:
        found = re.search(rf'data-count="{name}"[^>]*>\s*([0-9]+)', html)
        assert found is not None, name
        return found.group(1)

    def stat(html: str, name: str) -> str:
        found = re.search(rf'data-stat="{name}"[^>]*>([^<]*)<', html)
        assert found is not None, name
        return found.group(1).strip()

    everything = admin.get("/admin").text
    assert (count(everything, "rankings"), count(everything, "prompt_sets"), count(everything, "sets")) == (
        "3",
        "2",
        "4",
    )
    # Every project together: the projects side by side, each row its own figures.
    assert 'id="projects-overview"' in everything
    row = re.search(rf'data-project="{ids["beta"]}">(.*?)</tr>', everything, re.S)
    assert row is not None and "beta-policy" in row.group(1)

    alpha_page = admin.get(f"/admin?project={ids['alpha']}").text
    assert stat(alpha_page, "project") == "alpha"
    assert (count(alpha_page, "rankings"), count(alpha_page, "prompt_sets"), count(alpha_page, "sets")) == (
        "2",
        "1",
        "3",
    )
    assert stat(alpha_page, "active-policy") == "none yet"
    assert 'id="projects-overview"' not in alpha_page
    beta_page = admin.get(f"/admin?project={ids['beta']}").text
    assert count(beta_page, "rankings") == "1" and stat(beta_page, "active-policy") == "beta-policy"
    # The chart's data follows the switcher.
    days = admin.get(f"/admin/charts/rankings-per-day.json?project={ids['alpha']}").json()["rows"]
    assert sum(r["rankings"] for r in days) == 2
    assert admin.get("/admin?project=999999").status_code == 404


def test_the_project_form_sets_the_gold_rate_within_zero_and_one(admin):
    with session_scope() as s:
        project = make_project(s, "golden")
        url = f"/admin/projects/{project.id}"
    form = admin.get(url)
    assert 'name="gold_rate"' in form.text
    base = {"csrf_token": csrf_from(form.text), "name": "golden"}
    for bad in ("1.5", "-0.1", "often", "nan"):
        resp = admin.post(url, data={**base, "gold_rate": bad})
        assert resp.status_code == 422 and "gold_rate" in resp.text, bad
    assert admin.post(url, data={**base, "gold_rate": "0.25"}, follow_redirects=False).status_code == 303
    with session_scope() as s:
        assert s.get(Project, project.id).gold_rate == 0.25
    assert 'value="0.25"' in admin.get(url).text
    # Empty: back to the server's setting.
    assert admin.post(url, data={**base, "gold_rate": ""}, follow_redirects=False).status_code == 303
    with session_scope() as s:
        assert s.get(Project, project.id).gold_rate is None
