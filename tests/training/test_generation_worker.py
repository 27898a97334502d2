"""Generation-only jobs run by the real worker code on a tiny random Llama: the demo's first generation puts
the model's replies beside the people's (so the leaderboard has two versions after a few rankings), and a
job for one prompt set writes its comparison sets with the version and sampling settings asked for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.annotation import service as annotation
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.db import session_scope
from app.demo import seed as demo
from app.orm import Candidate, ComparisonSet, ModelVersion, Prompt, Round, RoundStatus
from app.prompts import service as prompts_service
from app.prompts.schemas import ImportKind
from app.quality import version_stats
from app.training import rounds
from tests.factories import make_annotator
from tests.training_data import tiny_overrides
from worker import versions
from worker.tasks import run_round_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts", "fresh_stats")]


def sets_of_round(session, round_id: int) -> list[ComparisonSet]:
    return list(session.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}")))


def test_the_demos_first_generation_mixes_model_and_people_and_fills_the_leaderboard(clean_db, model_dir):
    settings = get_settings()
    with session_scope() as s:
        demo.seed(s, settings)
    with session_scope() as s:
        overrides = {**tiny_overrides(model_dir), **demo.first_generation(s)}
        round_id = rounds.start_generation(s, settings, overrides, requested_by_id=None, trigger="demo").id
    assert run_round_job(round_id, job_id=None) == "succeeded"

    with session_scope() as s:
        made = sets_of_round(s, round_id)
        assert len(made) == demo.MODEL_PROMPTS
        for cset in made:
            authors = {
                s.get(ModelVersion, s.get(Candidate, i.candidate_id).model_version_id).name
                for i in cset.items
            }
            assert "oasst-human" in authors and any(a.startswith("base-") for a in authors), authors
        # A few rankings, as the demo's annotator would make them: the demo-model sets come first.
        person = make_annotator(s, "demo-annotator")
        for _ in range(3):
            task = annotation.next_task(s, settings, person)
            assert task is not None and task.assignment.set_id in {c.id for c in made}
            ids = [c.id for c in task.candidates]
            annotation.submit_ranking(
                s, settings, person, RankingIn(assignment_id=task.assignment.id, tiers=[[i] for i in ids])
            )
    with session_scope() as s:
        board = version_stats.leaderboard_ratings(s)
        names = {s.get(ModelVersion, r.version).name for r in board.ratings}
    assert len(board.ratings) >= 2 and "oasst-human" in names


def test_a_generation_job_for_one_prompt_set_uses_the_chosen_version_and_sampling(clean_db, model_dir):
    settings = get_settings()
    lines = b"".join(b'{"prompt": "tell me a story about the %s"}\n' % w for w in (b"cat", b"dog", b"moon"))
    with session_scope() as s:
        other = prompts_service.import_file(
            s, settings, b'{"prompt": "write a poem"}\n', ImportKind.prompts, "other"
        )
        target = prompts_service.import_file(s, settings, lines, ImportKind.prompts, "stories")
        assert target.waiting_for_candidates == 3 and other.waiting_for_candidates == 1
        base = versions.base_policy(s, str(model_dir))
    overrides = tiny_overrides(
        model_dir, k=2, temperature=0.5, top_p=0.9, max_new_tokens=6, generate_prompts=10
    )
    with session_scope() as s:
        row = rounds.start_generation(
            s,
            settings,
            {**overrides, "prompt_set_id": target.prompt_set_id, "model_version_id": base.id},
            requested_by_id=None,
        )
        round_id = row.id
    assert run_round_job(round_id, job_id=None) == "succeeded"
    with session_scope() as s:
        done = s.get(Round, round_id)
        assert done is not None and done.status == RoundStatus.succeeded
        assert done.total == 3 * 2 and done.step == done.total  # step / total: replies written
        made = sets_of_round(s, round_id)
        assert len(made) == 3  # only the chosen prompt set's prompts
        set_prompts = {s.get(Prompt, c.prompt_id).prompt_set_id for c in made}
        assert set_prompts == {target.prompt_set_id}
        cands = [s.get(Candidate, i.candidate_id) for c in made for i in c.items]
        assert {c.model_version_id for c in cands} == {base.id}
        assert all(
            c.generation_params["temperature"] == 0.5 and c.generation_params["top_p"] == 0.9 for c in cands
        )
        assert all(c.generation_params["completion_tokens"] <= 6 for c in cands)


def test_a_child_process_writes_part_of_the_replies_exactly_as_this_process_would(
    clean_db, model_dir, monkeypatch
):
    """`parallel_stages`: a CPU worker gives the first generation chunks to a child process. Every stored
    reply, whichever process wrote it, is the one its recorded seed gives here (worker/generation.py)."""
    from app.text import clean_generated
    from worker.generation import SamplingParams, sample
    from worker.models import load_causal_lm

    settings = get_settings()
    monkeypatch.setattr(settings, "parallel_stages", "on")
    monkeypatch.setattr(settings, "torch_threads", 1)
    texts = ["tell me about the cat", "write a poem about rain", "why is the sky blue", "name three birds"]
    lines = b"".join(b'{"prompt": "%s"}\n' % t.encode() for t in texts)
    with session_scope() as s:
        prompts_service.import_file(s, settings, lines, ImportKind.prompts, "four")
    # Two prompts per chunk: two chunks, one for each process.
    overrides = tiny_overrides(model_dir, k=2, generation_batch_size=4, max_new_tokens=6, generate_prompts=4)
    with session_scope() as s:
        round_id = rounds.start_generation(s, settings, overrides, requested_by_id=None).id
    assert run_round_job(round_id, job_id=None) == "succeeded"

    model, tokenizer = load_causal_lm(str(model_dir))
    with session_scope() as s:
        done = s.get(Round, round_id)
        assert done.status == RoundStatus.succeeded, done.error
        assert any("4 of the replies in a child process" in line for line in done.log_tail)
        assert done.step == done.total == 8
        cands = [s.get(Candidate, i.candidate_id) for c in sets_of_round(s, round_id) for i in c.items]
        assert {s.get(Prompt, c.prompt_id).text for c in cands} == set(texts)
        for c in cands:
            p = c.generation_params
            params = SamplingParams(p["temperature"], p["top_p"], p["max_new_tokens"])
            ((text, *_),) = sample(model, tokenizer, [s.get(Prompt, c.prompt_id).text], [c.seed], params)
            assert clean_generated(text) == c.text
