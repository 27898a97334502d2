"""Time per ranking is the server's measure (task handed out -> ranking stored), drawn as a real histogram."""

from __future__ import annotations

import csv
import io
import itertools
import math
import re

import pytest

from app.admin import charts
from app.admin.annotators import TIMING_MIN_BINS, timing_edges
from app.db import session_scope
from app.orm import Role
from tests.conftest import login
from tests.factories import make_comparison_set, make_prompt, make_prompt_set

pytestmark = pytest.mark.usefixtures("fresh_stats")

RANKINGS = 200
CLAIMED = 50.0


def test_a_script_claiming_50_s_per_task_shows_the_seconds_it_really_took(app_client, make_user, api_token):
    with session_scope() as s:
        ps = make_prompt_set(s)
        for i in range(RANKINGS):
            make_comparison_set(s, make_prompt(s, ps, text=f"Question {i}?"), k=2, overlap=1)
    h = {"Authorization": f"Bearer {api_token('fastbot')}"}
    for _ in range(RANKINGS):
        task = app_client.get("/api/v1/tasks/next", headers=h).json()
        a, b = (c["id"] for c in task["candidates"])
        body = {"assignment_id": task["assignment_id"], "tiers": [[a], [b]], "seconds_spent": CLAIMED}
        resp = app_client.post("/api/v1/rankings", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        out = resp.json()
        assert out["seconds_spent"] == CLAIMED and out["server_seconds"] < 5
    app_client.cookies.clear()
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)

    rows = {
        r["username"]: r for r in csv.DictReader(io.StringIO(app_client.get("/admin/annotators.csv").text))
    }
    bot = rows["fastbot"]
    assert int(bot["rankings"]) == RANKINGS
    assert float(bot["median_seconds"]) < 5  # what the server saw, seconds at most
    assert float(bot["median_client_seconds"]) == CLAIMED  # the claim, kept as an extra
    listing = app_client.get("/admin/annotators").text
    median = re.search(r'data-field="median">([^<]*)<', listing)
    assert median and float(median.group(1).removesuffix(" s")) < 5

    bot_id = re.search(r'href="/admin/annotators/(\d+)">fastbot<', listing)
    assert bot_id
    page = app_client.get(f"/admin/annotators/{bot_id.group(1)}").text
    assert re.search(r'data-stat="client-median">50 s<', page)
    timing = list(
        csv.DictReader(io.StringIO(app_client.get(f"/admin/annotators/{bot_id.group(1)}/timing.csv").text))
    )
    assert sum(int(r["rankings"]) for r in timing) == RANKINGS
    # Every ranking lands in a bin below 5 s; none near the claimed 50 s.
    assert all(float(r["to_seconds"]) <= 8 for r in timing if int(r["rankings"]))
    # Doubling bins, contiguous.
    for r in timing:
        assert float(r["to_seconds"]) == 2 * float(r["from_seconds"])
    assert all(a["to_seconds"] == b["from_seconds"] for a, b in itertools.pairwise(timing))


def test_timing_bins_double_and_cover_the_data():
    edges = timing_edges(0.004, 2500.0)
    assert edges[0] == 0.125 and edges[-1] >= 2500.0
    assert all(b == 2 * a for a, b in itertools.pairwise(edges))
    one_value = timing_edges(12.0, 12.0)
    assert len(one_value) - 1 >= TIMING_MIN_BINS and one_value[0] <= 12.0 < one_value[-1]


def test_log_histogram_draws_widths_proportional_to_the_range_and_labels_every_tick():
    edges = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    chart = charts.log_histogram(edges, [1, 5, 9, 3, 0, 0, 1, 2], title="t", width=560)
    widths = {round(b.width, 0) for b in chart.bars}
    assert len(widths) == 1  # doubling bins are equally wide on the log axis
    # Contiguous bars in order, each labelled with its range.
    assert all(a.x < b.x for a, b in itertools.pairwise(chart.bars))
    assert chart.bars[0].label == "1 s to 2 s"
    # Ticks sit at their values on the log axis: 10 s is log(10)/log(256) of the way across.
    by_label = {t.label: t.pos for t in chart.x_ticks}
    assert {"1 s", "10 s", "1 min"} <= set(by_label)
    left, right = 44, 560 - 8
    assert by_label["10 s"] == pytest.approx(left + math.log(10) / math.log(256) * (right - left), abs=0.2)
    gaps = [b.pos - a.pos for a, b in itertools.pairwise(chart.x_ticks)]
    assert min(gaps) >= 46  # no label crowds another, none is skipped for lack of room
