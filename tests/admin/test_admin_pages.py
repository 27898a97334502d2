"""Admin pages with data: what they count and rank, their lists and data downloads (the Data pages' browser
and moderation: test_admin_data.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.orm import (
    Candidate,
    ComparisonSet,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Ranking,
    SetStatus,
)
from app.quality import annotator_stats
from app.quality.stats import RankingRecord, bradley_terry, version_outcomes, win_rate
from tests.admin_data import random_loop, rank, skip
from tests.conftest import csrf_from
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = pytest.mark.usefixtures("fresh_stats")


def stat(html: str, name: str) -> str:
    m = re.search(rf'data-stat="{name}"[^>]*>([^<]*)<', html)
    assert m, f"no data-stat {name}"
    return m.group(1).strip()


def rows_of(resp) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(resp.text)))


# --- overview -----------------------------------------------------------------------------------------


def test_overview_counts_activity_open_work_and_models(admin):
    now = dt.datetime.now(dt.UTC)
    with session_scope() as s:
        ps = make_prompt_set(s, "ov")
        policy = make_model_version(s, "policy-live", status=ModelStatus.active)
        make_model_version(s, "policy-old", status=ModelStatus.retired)
        make_model_version(s, "reward-1", kind=ModelKind.reward, status=ModelStatus.candidate)
        people = [make_annotator(s, f"p{i}") for i in range(3)]
        sets = []
        for i in range(3):
            prompt = make_prompt(s, ps, f"q{i}")
            sets.append(
                make_comparison_set(
                    s,
                    prompt,
                    candidates=make_candidates(s, prompt, ["a", "b"], model_version=policy),
                    overlap=2,
                )
            )
        a, b = (c.candidate_id for c in sets[0].items)
        rank(s, sets[0], people[0], [[a], [b]])  # today
        rank(s, sets[0], people[1], [[b], [a]], created_at=now - dt.timedelta(days=3))
        rank(s, sets[1], people[2], [[a], [b]], created_at=now - dt.timedelta(days=10))  # not active
        rank(s, sets[2], people[2], [[a], [b]], dropped=True)  # dropped: counts nowhere
        sets[0].status = SetStatus.closed
    html = admin.get("/admin").text
    assert 'data-count="rankings">3<' in html
    assert stat(html, "active-annotators") == "2"
    # sets[1] and sets[2] are open and each want one more ranking (sets[2]'s dropped ranking still holds
    # its submitted assignment); sets[0] is closed.
    assert stat(html, "open-sets") == "2"
    assert stat(html, "rankings-wanted") == "2"
    assert stat(html, "active-policy") == "policy-live"
    assert stat(html, "reward-model") == "reward-1"
    assert "No round is running" in html

    data = admin.get("/admin/charts/rankings-per-day.json").json()
    assert data["columns"] == ["day", "rankings"] and len(data["rows"]) == 30
    per_day = {row["day"]: row["rankings"] for row in data["rows"]}
    assert per_day[now.date().isoformat()] == 1
    assert per_day[(now - dt.timedelta(days=3)).date().isoformat()] == 1
    assert sum(per_day.values()) == 3
    csv_rows = rows_of(admin.get("/admin/charts/rankings-per-day.csv"))
    assert [(r["day"], int(r["rankings"])) for r in csv_rows] == [
        (r["day"], r["rankings"]) for r in data["rows"]
    ]
    assert (
        admin.get("/admin/charts/rankings-per-day.json?days=7").json()["rows"][-1]["day"]
        == now.date().isoformat()
    )
    assert admin.get("/admin/charts/rankings-per-day.xml").status_code == 422
    assert admin.get("/admin/charts/rankings-per-day.json?days=0").status_code == 422


def test_overview_shows_the_running_round(admin):
    from app.config import get_settings
    from app.training import rounds as training

    with session_scope() as s:
        row = training.start_round(s, get_settings(), {}, requested_by_id=None)
        round_id = row.id
    html = admin.get("/admin").text
    assert f'href="/admin/rounds/{round_id}">#{round_id}</a>' in stat_block(html, "current-round")
    assert stat_block(html, "current-round").startswith('data-stat="current-round">Training round')


def test_overview_calls_a_generation_job_by_its_name(admin):
    from app.config import get_settings
    from app.training import rounds as training

    with session_scope() as s:
        ps = make_prompt_set(s)
        make_prompt(s, ps)
        job_id = training.start_generation(
            s, get_settings(), {"prompt_set_id": ps.id}, requested_by_id=None
        ).id
    block = stat_block(admin.get("/admin").text, "current-round")
    assert block.startswith('data-stat="current-round">Generation job')
    assert f'href="/admin/rounds/{job_id}">#{job_id}</a>' in block
    shown = re.sub(r"<[^>]+>", "", block.split(">", 1)[1].split("</p>")[0])
    assert "round" not in shown.lower()


def stat_block(html: str, name: str) -> str:
    start = html.index(f'data-stat="{name}"')
    return html[start : start + 400]


# --- leaderboard and win-rates against app.quality ----------------------------------------------------


def _records_and_versions():
    with session_scope() as s:
        rows = s.scalars(select(Ranking).where(Ranking.dropped.is_(False)).order_by(Ranking.id)).all()
        records = [RankingRecord.of(r) for r in rows]
        version_of = {cid: vid for cid, vid in s.execute(select(Candidate.id, Candidate.model_version_id))}
        names = {v.id: v.name for v in s.scalars(select(ModelVersion))}
    return records, version_of, names


def test_leaderboard_orders_versions_as_app_quality_does(admin):
    with session_scope() as s:
        random_loop(s, seed=11, versions=4, sets=60, quality=[0.0, 0.7, 1.4, 2.1])
    records, version_of, names = _records_and_versions()
    expected = bradley_terry(version_outcomes(records, version_of), rounds=200)
    html = admin.get("/admin/leaderboard").text
    shown = re.findall(r'<tr data-version="(\d+)">', html)
    assert [int(v) for v in shown] == [r.version for r in expected]
    # The best latent quality comes first, the worst last.
    assert (
        names[expected[0].version].split("-")[2] == "3" and names[expected[-1].version].split("-")[2] == "0"
    )
    data = admin.get("/admin/leaderboard.json").json()["rows"]
    for row, e in zip(data, expected, strict=True):
        assert row["version_id"] == e.version and row["name"] == names[e.version]
        assert row["rating"] == pytest.approx(e.rating, abs=0.06)
        assert row["comparisons"] == e.comparisons
        assert row["ci_low"] < row["rating"] < row["ci_high"]
    table = rows_of(admin.get("/admin/leaderboard.csv"))
    assert [int(r["version_id"]) for r in table] == [r.version for r in expected]
    assert "<svg" in html and "Bradley-Terry" in html


def test_models_page_human_win_rate_equals_app_quality(admin):
    with session_scope() as s:
        loop = random_loop(s, seed=12, versions=3, sets=40)
        child, parent = loop.versions[2], loop.versions[1]
        child.metrics = {"winrate_vs_parent": 0.625}
        ids = (child.id, parent.id)
    records, version_of, _ = _records_and_versions()
    expected = win_rate(version_outcomes(records, version_of), *ids)
    assert expected.comparisons > 0
    rows = {r["version_id"]: r for r in admin.get("/admin/models.json").json()["rows"]}
    got = rows[ids[0]]
    assert got["human_win_rate_vs_parent"] == pytest.approx(expected.rate, abs=1e-4)
    assert got["human_ci_low"] == pytest.approx(expected.low, abs=1e-4)
    assert got["human_ci_high"] == pytest.approx(expected.high, abs=1e-4)
    assert got["human_comparisons"] == expected.comparisons
    assert got["reward_scored_win_rate_vs_parent"] == 0.625
    html = admin.get("/admin/models").text
    block = html[html.index(f'id="version-{ids[0]}"') :]
    assert f"{expected.rate * 100:.1f}%" in block[:2000]
    assert f'data-metric="comparisons">{expected.comparisons}<' in block[:2000]
    # The lineage nests the child under its parent.
    assert html.index(f'id="version-{ids[1]}"') < html.index(f'id="version-{ids[0]}"')


def test_promote_and_roll_back_change_the_active_policy(admin):
    with session_scope() as s:
        old = make_model_version(s, "policy-a", status=ModelStatus.active)
        new = make_model_version(s, "policy-b", status=ModelStatus.candidate)
        new.parent_id = old.id
        reward = make_model_version(s, "reward-a", kind=ModelKind.reward, status=ModelStatus.candidate)
        ids = old.id, new.id, reward.id
    page = admin.get("/admin/models")
    assert f'data-promote="{ids[1]}"' in page.text and f'data-promote="{ids[2]}"' not in page.text
    token = csrf_from(page.text)
    r = admin.post(f"/admin/models/{ids[1]}/promote", data={"csrf_token": token})
    assert r.status_code == 200 and "policy-b is now the active policy" in r.text
    assert stat(r.text, "active-policy") == "policy-b"

    def statuses():
        with session_scope() as s:
            return {v.name: v.status for v in s.scalars(select(ModelVersion))}

    assert statuses()["policy-a"] == ModelStatus.retired and statuses()["policy-b"] == ModelStatus.active
    assert "Roll back to this" in r.text
    admin.post(f"/admin/models/{ids[0]}/promote", data={"csrf_token": token})
    assert statuses()["policy-a"] == ModelStatus.active and statuses()["policy-b"] == ModelStatus.retired
    r = admin.post(f"/admin/models/{ids[2]}/promote", data={"csrf_token": token})
    assert r.status_code == 409 and "only policies are promoted" in r.text
    assert admin.post("/admin/models/999999/promote", data={"csrf_token": token}).status_code == 404


def test_compare_shows_two_versions_on_shared_prompts(admin):
    with session_scope() as s:
        a = make_model_version(s, "va", status=ModelStatus.active)
        b = make_model_version(s, "vb", status=ModelStatus.retired)
        a.parent_id = b.id
        ps = make_prompt_set(s)
        for i in range(12):
            prompt = make_prompt(s, ps, f"shared prompt {i}")
            make_candidates(s, prompt, [f"A says {i} <b>bold</b>"], model_version=a)
            make_candidates(s, prompt, [f"B says {i}"], model_version=b)
        only_a = make_prompt(s, ps, "only a")
        make_candidates(s, only_a, ["lonely"], model_version=a)
        ids = a.id, b.id
    html = admin.get("/admin/models/compare").text  # defaults to the active policy vs its parent
    assert "A says 11 &lt;b&gt;bold&lt;/b&gt;" in html and "B says 11" in html
    assert "lonely" not in html and "<b>bold</b>" not in html
    assert "1\u201310 of 12 shared prompts" in html
    page2 = admin.get(f"/admin/models/compare?a={ids[0]}&b={ids[1]}&page=2").text
    assert "A says 0" in page2 and "A says 11" not in page2
    assert admin.get(f"/admin/models/compare?a={ids[0]}&b={ids[0]}").status_code == 422
    assert admin.get("/admin/models/compare?a=999999&b=1").status_code == 404


# --- annotators ---------------------------------------------------------------------------------


def test_annotator_figures_are_counted_right(admin):
    with session_scope() as s:
        ps = make_prompt_set(s)
        mv = make_model_version(s)
        ann = make_annotator(s, "counted")
        other = make_annotator(s, "other")
        sets = []
        for _ in range(5):
            prompt = make_prompt(s, ps)
            sets.append(
                make_comparison_set(
                    s, prompt, candidates=make_candidates(s, prompt, ["x", "y", "z"], model_version=mv)
                )
            )
        for i, seconds in enumerate([10.0, 20.0, 40.0]):
            x, y, z = (c.candidate_id for c in sets[i].items)
            rank(s, sets[i], ann, [[x], [y], [z]], seconds=seconds)
            rank(s, sets[i], other, [[x], [z], [y]] if i else [[x], [y], [z]])
        skip(s, sets[3], ann)
        rank(s, sets[4], ann, [[z], [y], [x]], seconds=5000.0, dropped=True)
        ann_id = ann.id
    rows = {r["username"]: r for r in rows_of(admin.get("/admin/annotators.csv"))}
    mine = rows["counted"]
    assert int(mine["rankings"]) == 3 and int(mine["dropped"]) == 1 and int(mine["skips"]) == 1
    assert float(mine["median_seconds"]) == 20.0  # the dropped 5000 s ranking does not count
    assert float(mine["skip_rate"]) == pytest.approx(1 / 5)
    # Shared sets 0..2: identical on set 0 (3 of 3 pairs), one swapped pair on sets 1 and 2 (2 of 3 each).
    assert int(mine["compared_pairs"]) == 9
    assert float(mine["pairwise_agreement"]) == pytest.approx(7 / 9, abs=1e-4)
    html = admin.get("/admin/annotators").text
    assert f'href="/admin/annotators/{ann_id}">counted</a>' in html
    detail = admin.get(f"/admin/annotators/{ann_id}").text
    assert 'data-stat="rankings">3<' in detail
    timing = rows_of(admin.get(f"/admin/annotators/{ann_id}/timing.csv"))
    by_bucket = {(float(r["from_seconds"]), float(r["to_seconds"])): int(r["rankings"]) for r in timing}
    # Doubling bins: 10 s in [8, 16), 20 s in [16, 32), 40 s in [32, 64).
    assert by_bucket[(8, 16)] == 1 and by_bucket[(16, 32)] == 1 and by_bucket[(32, 64)] == 1
    assert sum(by_bucket.values()) == 3
    assert admin.get("/admin/annotators/999999").status_code == 404


# --- quality ------------------------------------------------------------------------------------------


def test_quality_pages_show_agreement_bias_and_consensus(admin):
    with session_scope() as s:
        random_loop(s, seed=13, versions=2, sets=15, annotators=3)
    html = admin.get("/admin/quality").text
    summary_rate = None
    with session_scope() as s:
        summary_rate = annotator_stats.agreement_summary(s).overall.rate
    assert stat(html, "agreement") == f"{summary_rate * 100:.1f}%"
    assert 'data-bias="first_shown"' in html and 'data-bias="longer"' in html
    bias = admin.get("/admin/quality/bias.json").json()["rows"]
    assert {b["statistic"] for b in bias} == {"first_shown", "earlier_shown", "longer"}
    assert all(b["ci_low"] <= b["rate"] <= b["ci_high"] for b in bias if b["n"])
    pairs = rows_of(admin.get("/admin/quality/agreement.csv"))
    assert pairs and all(int(p["compared_pairs"]) > 0 for p in pairs)
    consensus = admin.get("/admin/quality/consensus").text
    assert consensus.count('class="card consensus"') > 0 and "data-consensus" in consensus


def test_every_chart_data_url_answers_csv_and_json_alike(admin):
    with session_scope() as s:
        loop = random_loop(s, seed=14, versions=3, sets=12, annotators=3)
        s.flush()
        annotator = loop.annotators[0].id
        from app.orm import Round, RoundStatus

        row = Round(
            status=RoundStatus.succeeded,
            stage="done",
            config={},
            loss_curve=[["reward", 1, 0.7], ["reward", 2, 0.6], ["policy", 1, 0.69]],
            log_tail=[],
            metrics={},
        )
        s.add(row)
        s.flush()
        round_id = row.id
    for base in (
        "/admin/charts/rankings-per-day",
        "/admin/leaderboard",
        "/admin/models",
        "/admin/annotators",
        f"/admin/annotators/{annotator}/timing",
        "/admin/quality/bias",
        "/admin/quality/agreement",
        f"/admin/rounds/{round_id}/loss",
    ):
        as_json = admin.get(base + ".json")
        as_csv = admin.get(base + ".csv")
        assert as_json.status_code == as_csv.status_code == 200, base
        assert as_csv.headers["content-type"].startswith("text/csv")
        body = as_json.json()
        table = rows_of(as_csv)
        assert list(table[0].keys()) == body["columns"], base
        assert len(table) == len(body["rows"]) > 0, base
        for csv_row, json_row in zip(table, body["rows"], strict=True):
            for key, value in json_row.items():
                assert csv_row[key] == ("" if value is None else str(value)), (base, key)
    loss = admin.get(f"/admin/rounds/{round_id}/loss.json").json()["rows"]
    assert loss == [
        {"stage": "reward", "step": 1, "loss": 0.7},
        {"stage": "reward", "step": 2, "loss": 0.6},
        {"stage": "policy", "step": 1, "loss": 0.69},
    ]


def test_version_names_and_texts_are_escaped_everywhere(admin):
    evil = '<script>alert("x")</script>'
    with session_scope() as s:
        ps = make_prompt_set(s, evil)
        a = make_model_version(s, "evil" + evil, status=ModelStatus.active)
        b = make_model_version(s, "plain", status=ModelStatus.retired)
        a.parent_id = b.id
        people = [make_annotator(s, f"esc{i}") for i in range(2)]
        prompt = make_prompt(s, ps, evil, tags=[evil])
        cands = make_candidates(s, prompt, [evil], model_version=a) + make_candidates(
            s, prompt, ["ok"], model_version=b
        )
        cset = make_comparison_set(s, prompt, candidates=cands)
        for who in people:
            rank(s, cset, who, [[cands[0].id], [cands[1].id]], flags={str(cands[0].id): ["unsafe"]})
    for url in (
        "/admin/leaderboard",
        "/admin/models",
        "/admin/models/compare",
        "/admin/data",
        "/admin/data/rankings",
        "/admin/data/flags",
        "/admin/quality/consensus",
    ):
        html = admin.get(url).text
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert(" in html, url


def test_htmx_requests_get_the_fragment(admin):
    full = admin.get("/admin/leaderboard")
    frag = admin.get("/admin/leaderboard", headers={"HX-Request": "true"})
    assert full.text.lstrip().startswith("<!doctype html>")
    assert "<html" not in frag.text and "<h1>Leaderboard</h1>" in frag.text
    assert 'class="subnav"' in frag.text


def test_leaderboard_is_empty_until_two_versions_meet(admin):
    # A set whose candidates all come from one version compares nothing: the leaderboard stays empty.
    with session_scope() as s:
        ps = make_prompt_set(s)
        mv = make_model_version(s, "solo")
        prompt = make_prompt(s, ps)
        cands = make_candidates(s, prompt, ["a", "b"], model_version=mv)
        cset = make_comparison_set(s, prompt, candidates=cands)
        rank(s, cset, make_annotator(s, "one"), [[cands[0].id], [cands[1].id]])
        assert s.scalar(select(ComparisonSet.id)) == cset.id
    html = admin.get("/admin/leaderboard").text
    assert "No ranking has compared candidates of two different versions yet" in html
    assert admin.get("/admin/leaderboard.json").json()["rows"] == []


def _plain(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip())


def test_consensus_page_shows_the_training_merge_and_the_consensus(admin):
    with session_scope() as s:
        mv = make_model_version(s, "m")
        prompt = make_prompt(s, make_prompt_set(s), "three judges")
        a, b, c = make_candidates(s, prompt, ["A text", "B text", "C text"], model_version=mv)
        cset = make_comparison_set(s, prompt, candidates=[a, b, c], overlap=3)
        judges = [make_annotator(s, f"judge{i}") for i in range(3)]
        rank(s, cset, judges[0], [[a.id], [b.id], [c.id]])
        rank(s, cset, judges[1], [[a.id], [c.id], [b.id]])
        rank(s, cset, judges[2], [[c.id], [b.id], [a.id]], all_bad=True)
    html = admin.get("/admin/quality/consensus").text
    training = re.search(r"<td data-training>(.*?)</td>", html, re.S)
    consensus = re.search(r"<td data-consensus>(.*?)</td>", html, re.S)
    assert training and consensus
    # Mean tiers without the all-bad vote: A 0, B 1.5, C 1.5.
    assert _plain(training.group(1)) == "A > B=C"
    # Bradley-Terry over all three: A wins 2 of 3 against each, C beats B 2 of 3.
    assert _plain(consensus.group(1)) == "A > C > B"
