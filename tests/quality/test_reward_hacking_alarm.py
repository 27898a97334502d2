"""The reward-hacking alarm: the reward model's predicted win-rate of a policy over the active one next to
the blind human win-rate on the same sets; flagged (page, API) and refused by the promotion gate when the
reward model says better and people say worse, the 95% intervals apart."""

from __future__ import annotations

import pytest

from app.config import get_settings
from app.db import session_scope
from app.orm import ModelKind, ModelStatus, ModelVersion, RewardScore, Role
from app.quality import reward_signals
from app.training import rounds
from tests.admin_data import rank
from tests.conftest import login
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
)
from worker import scheduler

pytestmark = pytest.mark.usefixtures("fresh_stats")


def build(session, *, sets: int, people_prefer_new: int) -> tuple[int, int, int]:
    """Active `old`, candidate `new`, reward model `rm` scoring new above old in every set; people prefer new
    in `people_prefer_new` of the `sets` rankings. Returns (old, new, rm) ids."""
    old = make_model_version(session, "policy-old", status=ModelStatus.active)
    new = make_model_version(session, "policy-new", status=ModelStatus.candidate)
    new.parent_id = old.id
    rm = make_model_version(session, "reward-1", kind=ModelKind.reward, status=ModelStatus.candidate)
    annotator = make_annotator(session)
    for i in range(sets):
        prompt = make_prompt(session)
        (n,) = make_candidates(session, prompt, [f"flattering {i}"], model_version=new)
        (o,) = make_candidates(session, prompt, [f"plain {i}"], model_version=old)
        cset = make_comparison_set(session, prompt, candidates=[n, o])
        session.add_all(
            [
                RewardScore(reward_version_id=rm.id, candidate_id=n.id, score=2.0 + i / 100),
                RewardScore(reward_version_id=rm.id, candidate_id=o.id, score=-1.0),
            ]
        )
        rank(session, cset, annotator, [[n.id], [o.id]] if i < people_prefer_new else [[o.id], [n.id]])
    session.flush()
    return old.id, new.id, rm.id


def test_the_signal_puts_the_reward_models_prediction_next_to_people(db):
    old, new, rm = build(db, sets=20, people_prefer_new=2)
    signal = reward_signals.reward_vs_human_of(db, new, old)
    assert signal is not None and signal.reward_version == rm and signal.pairs == 20
    assert signal.predicted == 1.0 and signal.predicted_low > 0.8
    assert signal.human is not None and signal.human.rate == pytest.approx(0.1)
    assert signal.human.high < signal.predicted_low and signal.hacking
    assert set(reward_signals.reward_vs_human(db, old)) == {new}


def test_no_alarm_while_people_agree_or_the_intervals_overlap(db):
    old, new, _ = build(db, sets=20, people_prefer_new=16)
    assert not reward_signals.reward_vs_human_of(db, new, old).hacking


def test_too_few_rankings_to_tell_raise_no_alarm(db):
    old, new, _ = build(db, sets=3, people_prefer_new=0)  # human interval [0, 0.56]; RM low 0.44
    assert not reward_signals.reward_vs_human_of(db, new, old).hacking


def test_auto_promotion_refuses_a_flagged_policy(db):
    old, new, _ = build(db, sets=40, people_prefer_new=4)
    version, check = rounds.request_promotion(
        db, get_settings().model_copy(update={"promotion_min_rankings": 30}), new
    )
    assert not check.passed and check.hacking and "reward hacking" in check.reason
    assert version.status == ModelStatus.candidate and version.promote_when_ready
    # Even with the gate off (promote at once) the flag holds it back.
    off = get_settings().model_copy(update={"promotion_min_rankings": 0})
    assert scheduler.promote_ready_policy(db, off) is None
    assert db.get(ModelVersion, old).status == ModelStatus.active


def test_page_and_api_flag_the_version(app_client, api_token, make_user):
    with session_scope() as s:
        old, new, rm = build(s, sets=20, people_prefer_new=2)
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    versions = {
        v["id"]: v for v in app_client.get("/api/v1/model-versions", headers=admin).json()["versions"]
    }
    alarm = versions[new]["reward_vs_active"]
    assert alarm["hacking"] is True and alarm["against"] == old and alarm["reward_version_id"] == rm
    assert alarm["predicted"] == 1.0 and alarm["pairs"] == 20
    assert alarm["human"]["rate"] == pytest.approx(0.1) and alarm["human"]["rankings"] == 20
    assert versions[new]["promotion_gate"]["passed"] is False
    assert versions[old]["reward_vs_active"] is None

    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    html = app_client.get("/admin/models").text
    block = html[html.index(f'id="version-{new}"') :][:5000]
    assert 'data-flag="reward-hacking"' in block and 'data-reward-vs-human="hacking"' in block
    assert "refused: reward hacking suspected" in block
    rows = {r["version_id"]: r for r in app_client.get("/admin/models.json").json()["rows"]}
    assert rows[new]["reward_hacking_suspected"] is True and rows[old]["reward_hacking_suspected"] is False
