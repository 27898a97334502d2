"""A whole training round on a tiny random Llama, run in-process against the test database:
snapshot, SFT, reward model, DPO policy, evaluation, publication, generation of new comparison sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_factory, session_scope
from app.orm import (
    Candidate,
    ComparisonSet,
    DataSnapshot,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Ranking,
    RewardScore,
    Round,
    RoundKind,
    RoundStatus,
    SetStatus,
)
from app.training import rounds
from tests.training_data import run_round_jobs, seed_rankings, tiny_overrides
from worker import artifacts, snapshot, versions
from worker.progress import Cancelled, ProgressReporter

# Each round trains a tiny model for a few seconds.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


def start(overrides: dict[str, object], kind: RoundKind = RoundKind.train) -> int:
    with session_scope() as s:
        return rounds.start_round(s, get_settings(), overrides, requested_by_id=None, kind=kind).id


def test_training_round_publishes_versions_and_serves_new_candidates(clean_db, model_dir):
    with session_scope() as s:
        seeded = seed_rankings(s, prompts=6, annotators=2, unranked=3, human_first=True)
    round_id = start(tiny_overrides(model_dir))

    assert run_round_jobs(round_id) == "succeeded"

    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.succeeded, row.error
        assert row.stage == "done" and row.attempts == 1 and row.finished_at is not None
        assert row.heartbeat_at is not None and row.device == "cpu"

        # 1. The snapshot names exactly the rankings that existed, with a digest of their content.
        snap = s.get(DataSnapshot, row.data_snapshot_id)
        assert sorted(snap.ranking_ids) == sorted(seeded["rankings"]) and snap.ranking_count == 12
        rows = s.execute(select(Ranking.id, Ranking.tiers, Ranking.all_bad)).all()
        assert snap.sha256 == snapshot.snapshot_digest([(i, t, b) for i, t, b in rows])

        # Every stage reported progress: the loss curve has reward and policy points, SFT ran on the
        # first-ranked human replies.
        stages = {p[0] for p in row.loss_curve}
        assert {"sft", "reward", "policy"} <= stages
        # ... except those of the round's held-out prompts, which judge the new policy.
        heldout = row.metrics["reward"]["heldout_prompts"]
        assert heldout >= 1 and row.metrics["sft"]["withheld_heldout_prompt_demonstrations"] == heldout
        assert row.metrics["sft"]["demonstrations"] == 6 - heldout
        assert any("stage generate" in line for line in row.log_tail)

        # 2.-5. Both versions published: complete, verified directories, then rows pointing at them.
        reward = s.get(ModelVersion, row.reward_version_id)
        policy = s.get(ModelVersion, row.policy_version_id)
        assert reward.kind == ModelKind.reward and policy.kind == ModelKind.policy
        assert reward.status == policy.status == ModelStatus.candidate
        assert reward.data_snapshot_id == policy.data_snapshot_id == snap.id
        base = s.scalars(select(ModelVersion).where(ModelVersion.name == f"base-{model_dir}"[:200])).one()
        assert policy.parent_id == base.id and base.status == ModelStatus.active
        for version in (reward, policy):
            path = Path(version.adapter_path)
            assert path.is_dir() and path.parent == get_settings().resolved_artifacts_dir.resolve()
            assert artifacts.verify_version(path) == []
            assert json.loads((path / artifacts.VERSION_FILE).read_text())["data_snapshot_id"] == snap.id
        assert reward.metrics["heldout_pairs"] > 0 and reward.metrics["heldout_accuracy"] is not None
        assert reward.config["round_id"] == round_id
        assert 0.0 <= policy.metrics["winrate_vs_parent"] <= 1.0 and policy.metrics["eval_prompts"] == 2
        assert policy.metrics["human_pairs"] > 0 and policy.metrics["wall_seconds"] > 0
        assert policy.metrics["device"] == "cpu"
        assert row.metrics["winrate_vs_parent"] == policy.metrics["winrate_vs_parent"]
        # Nothing is left behind in the artifacts dir except the two versions.
        names = sorted(p.name for p in get_settings().resolved_artifacts_dir.iterdir() if p.is_dir())
        assert names == sorted([policy.name, reward.name])

        # 6. New open comparison sets, mixing the new policy and the active one.
        sets = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}")).all()
        assert len(sets) == row.metrics["generated_sets"] == 5
        # Prompts nobody ranked come first; the rest go to ranked prompts (their sets are closed).
        assert set(seeded["prompts"][6:]) < {c.prompt_id for c in sets}
        versions_seen = set()
        for cset in sets:
            assert cset.status == SetStatus.open and cset.overlap == get_settings().overlap
            cands = [s.get(Candidate, item.candidate_id) for item in cset.items]
            assert 2 <= len(cands) <= 3
            for c in cands:
                assert c.seed is not None and c.generation_params["max_new_tokens"] == 8
                assert c.generation_params["round_id"] == round_id
                versions_seen.add(c.model_version_id)
        assert policy.id in versions_seen
        # Every new candidate was scored by the round's reward model (the reward-hacking alarm's input).
        scored = s.scalars(select(RewardScore.candidate_id).where(RewardScore.reward_version_id == reward.id))
        assert set(scored) == {item.candidate_id for cset in sets for item in cset.items}


def test_a_second_round_builds_on_the_previous_policy_and_compares_reward_models(
    clean_db, model_dir, monkeypatch
):
    monkeypatch.setattr(get_settings(), "promotion_min_rankings", 0)  # auto-promotion at once, no gate
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2)
    first = start(
        tiny_overrides(model_dir, generate_prompts=0, synthetic_prompts=0, eval_prompts=0, auto_promote="yes")
    )
    assert run_round_jobs(first) == "succeeded"
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2, seed=1)
    second = start(
        tiny_overrides(
            model_dir, synthetic_prompts=0, eval_prompts=1, generate_prompts=2, multi_annotator="consensus"
        )
    )
    assert run_round_jobs(second) == "succeeded"

    with session_scope() as s:
        r1, r2 = s.get(Round, first), s.get(Round, second)
        p1, p2 = s.get(ModelVersion, r1.policy_version_id), s.get(ModelVersion, r2.policy_version_id)
        # Auto-promoted first policy; the second one waits for an admin and names the first as its parent.
        assert p1.status == ModelStatus.active and p2.status == ModelStatus.candidate
        assert p2.parent_id == p1.id and p2.metrics["eval_parent_version_id"] == p1.id
        reward2 = s.get(ModelVersion, r2.reward_version_id)
        assert reward2.parent_id == r1.reward_version_id
        assert reward2.metrics["previous_version_id"] == r1.reward_version_id
        assert "previous_heldout_accuracy" in reward2.metrics
        assert len(s.get(DataSnapshot, r2.data_snapshot_id).ranking_ids) == 8
        # The new sets compare the new candidate policy with the active one in the same set.
        sets = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{second}")).all()
        assert sets
        seen = {s.get(Candidate, i.candidate_id).model_version_id for cset in sets for i in cset.items}
        assert seen == {p1.id, p2.id}


def test_a_round_without_rankings_fails_with_a_clear_reason(clean_db, model_dir):
    round_id = start(tiny_overrides(model_dir))
    with pytest.raises(snapshot.NoTrainingData):
        run_round_jobs(round_id)
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.failed
        assert "no rankings to train on yet" in row.error
        assert row.reward_version_id is None and s.scalars(select(ModelVersion)).all() == []


def test_a_stored_config_that_no_longer_validates_fails_the_round_at_once(clean_db, model_dir):
    round_id = start(tiny_overrides(model_dir))
    with session_scope() as s:
        row = s.get(Round, round_id)
        row.config = {**row.config, "k": 40}
    with pytest.raises(ValueError, match="k must be at most 9"):
        run_round_jobs(round_id)
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.failed and row.error.startswith("bad config: k must be at most 9")
        assert row.stage == "starting"


def test_generation_round_uses_the_active_policy(clean_db, model_dir):
    with session_scope() as s:
        seed_rankings(s, prompts=0, unranked=3)
    round_id = start(tiny_overrides(model_dir, generate_prompts=2), kind=RoundKind.generate)
    assert run_round_jobs(round_id) == "succeeded"
    with session_scope() as s:
        sets = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}")).all()
        assert len(sets) == 2
        active = versions.active_policy(s)
        assert active is not None and active.adapter_path is None  # the base model serves at first
        made = [s.get(Candidate, i.candidate_id) for c in sets for i in c.items]
        assert {c.model_version_id for c in made} == {active.id}
        # A reply cut at max_new_tokens (8 here: a tiny random model rarely stops sooner) is stored as
        # truncated, so the ranking page can mark it; one that stopped on its own is not.
        assert all(c.truncated == (c.generation_params["finish_reason"] == "length") for c in made)
        assert any(c.truncated for c in made)


def test_progress_reporter_raises_cancelled_after_an_admin_cancels(clean_db):
    round_id = start({"base_model": "unused"})
    with session_scope() as s:
        s.get(Round, round_id).status = RoundStatus.running
    with ProgressReporter(round_id, session_factory(), interval=0.05) as progress:
        progress.stage("reward", total=10)
        progress.update(1, 10, 0.7)
        with session_scope() as s:
            s.get(Round, round_id).cancel_requested = True
        with pytest.raises(Cancelled):
            for step in range(2, 10_000):
                progress.update(step, 10_000, 0.5)
                import time

                time.sleep(0.01)
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.stage == "reward" and row.step >= 2 and row.loss == 0.5
        assert row.loss_curve[0] == ["reward", 1, 0.7] and row.heartbeat_at is not None


def test_cli_round_queues_and_follows_and_eval_rm_scores_pairs(clean_db, model_dir, tmp_path):
    import subprocess
    import sys
    import threading

    from typer.testing import CliRunner

    from app.cli import app as cli
    from app.training.cli import follow

    rankloop = str(Path(sys.executable).with_name("rankloop"))
    bad = subprocess.run([rankloop, "round", "--set", "bogus=1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown round config key(s) 'bogus'" in bad.stdout

    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=0)
    sets = [f"{k}={v}" for k, v in tiny_overrides(model_dir, generate_prompts=0, eval_prompts=0).items()]
    result = CliRunner().invoke(cli, ["round", *[x for kv in sets for x in ("--set", kv)]])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        row = s.scalars(select(Round)).one()
        round_id = row.id
        assert f"round {round_id} queued" in result.output and row.config["max_length"] == 64

    # What `--wait` does: follow the row while the job runs (here in a thread instead of a worker).
    job = threading.Thread(target=run_round_jobs, args=(round_id,))
    job.start()
    assert follow(round_id, poll_seconds=0.2) == 0
    job.join()

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps(
                {"prompt": f"tell me about the {w}", "chosen": f"the {w} is good banana", "rejected": "no"}
            )
            for w in ("cat", "dog", "sun")
        )
        + "\n"
    )
    scored = CliRunner().invoke(cli, ["eval-rm", str(pairs)])
    assert scored.exit_code == 0, scored.output
    line = scored.output.strip().splitlines()[-1]
    accuracy = float(line.split()[0].split("=")[1])
    assert line.endswith("pairs=3") and 0.0 <= accuracy <= 1.0
    with session_scope() as s:
        policy_id = s.get(Round, round_id).policy_version_id
    wrong = subprocess.run(
        [rankloop, "eval-rm", str(pairs), "--version", str(policy_id)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "is not a reward model" in wrong.stdout


def test_retry_after_publication_resumes_at_generation_and_retry_before_it_drops_orphan_dirs(
    clean_db, model_dir
):
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=3)
    first = start(tiny_overrides(model_dir, generate_prompts=0, eval_prompts=0, synthetic_prompts=0))
    assert run_round_jobs(first) == "succeeded"
    root = get_settings().resolved_artifacts_dir

    # A round that died while generating, after its versions were published: the retry only generates.
    with session_scope() as s:
        done = s.get(Round, first)
        crashed = Round(
            kind=RoundKind.train,
            status=RoundStatus.running,
            config={**done.config, "generate_prompts": 2},
            stage="generate",
            attempts=1,
            data_snapshot_id=done.data_snapshot_id,
            reward_version_id=done.reward_version_id,
            policy_version_id=done.policy_version_id,
        )
        s.add(crashed)
        s.flush()
        crashed_id = crashed.id
        versions_before = len(s.scalars(select(ModelVersion)).all())
    assert run_round_jobs(crashed_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, crashed_id)
        assert row.attempts == 2 and row.metrics["generated_sets"] == 2
        assert len(s.scalars(select(ModelVersion)).all()) == versions_before
        assert any("generation of the published versions: attempt 2" in line for line in row.log_tail)

    # A round that died between writing its version directories and committing their rows.
    with session_scope() as s:
        s.get(Round, first).status = RoundStatus.succeeded
        died = Round(
            kind=RoundKind.train,
            status=RoundStatus.running,
            config={**s.get(Round, first).config},
            stage="publish",
            attempts=1,
        )
        s.add(died)
        s.flush()
        died_id = died.id
    for kind in ("reward", "policy"):
        orphan = root / f"{kind}-round{died_id}-a1"
        orphan.mkdir(parents=True)
        (orphan / "adapter_model.safetensors").write_bytes(b"from the attempt that crashed")
    assert run_round_jobs(died_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, died_id)
        names = {
            s.get(ModelVersion, row.reward_version_id).name,
            s.get(ModelVersion, row.policy_version_id).name,
        }
    assert names == {f"reward-round{died_id}-a2", f"policy-round{died_id}-a2"}
    assert (
        not (root / f"policy-round{died_id}-a1").exists()
        and not (root / f"reward-round{died_id}-a1").exists()
    )
    assert (root / f"policy-round{died_id}-a2").is_dir()
