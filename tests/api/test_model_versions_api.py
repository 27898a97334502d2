"""GET /api/v1/model-versions: a policy's blind human win-rate against its parent."""

from __future__ import annotations

from app.db import session_scope
from app.orm import ModelKind, ModelStatus, Role
from app.quality import cache as stats
from tests.admin_data import rank
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
)


def test_policy_lists_its_human_winrate_against_its_parent(app_client, api_token):
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    stats.clear_cache()
    with session_scope() as s:
        base = make_model_version(s, "base", status=ModelStatus.retired)
        child = make_model_version(s, "child", status=ModelStatus.active)
        child.parent_id = base.id
        reward = make_model_version(s, "reward", kind=ModelKind.reward, status=ModelStatus.candidate)
        reward.parent_id = None
        lone = make_model_version(s, "lone", status=ModelStatus.candidate)
        lone.parent_id = base.id  # never ranked against its parent: no figure
        prompt = make_prompt(s)
        b1, b2 = make_candidates(s, prompt, ["b1", "b2"], model_version=base)
        c1, c2 = make_candidates(s, prompt, ["c1", "c2"], model_version=child)
        cset = make_comparison_set(s, prompt, candidates=[b1, c1, b2, c2])
        # child pairs vs base: c1>b1, c1>b2, c2=b1 (tie), c2>b2 -> 3 wins, 1 tie of 4.
        rank(s, cset, make_annotator(s), [[c1.id], [b1.id, c2.id], [b2.id]])
        ids = {"base": base.id, "child": child.id, "reward": reward.id, "lone": lone.id}

    resp = app_client.get("/api/v1/model-versions", headers=admin)
    assert resp.status_code == 200, resp.text
    by_id = {v["id"]: v for v in resp.json()["versions"]}
    human = by_id[ids["child"]]["human_winrate_vs_parent"]
    assert human["against"] == ids["base"]
    assert (human["wins"], human["losses"], human["ties"], human["comparisons"]) == (3, 0, 1, 4)
    assert human["rankings"] == 1
    assert human["rate"] == 0.875
    assert 0.0 < human["low"] < 0.875 < human["high"] <= 1.0
    for name in ("base", "reward", "lone"):
        assert by_id[ids[name]]["human_winrate_vs_parent"] is None


def test_the_field_is_in_the_openapi_schema(app_client):
    schema = app_client.get("/openapi.json").json()["components"]["schemas"]
    assert "human_winrate_vs_parent" in schema["ModelVersionOut"]["properties"]
    assert set(schema["HumanWinRateOut"]["required"]) >= {"against", "rate", "low", "high", "comparisons"}
