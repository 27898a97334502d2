"""`--project` (name or id) on the commands that work on one project's data: import, export, round,
generate, import-demonstrations and users add/join/leave; default: the default project (exports: every
project, as the API's)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from app.db import session_scope
from app.orm import ModelKind, ModelVersion, PromptSet, Round, User
from app.projects import repository as projects_repo
from app.projects import service as projects
from tests.factories import make_project

runner = CliRunner()


def write_jsonl(path: Path, *objs: object) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def new_project(name: str) -> int:
    with session_scope() as s:
        return make_project(s, name).id


def prompt_sets() -> set[tuple[str, str]]:
    with session_scope() as s:
        rows = s.execute(select(PromptSet.name, PromptSet.project_id)).all()
        names = {p.id: p.name for p in projects.all_projects(s)}
        return {(name, names[pid]) for name, pid in rows}


def test_import_and_export_take_the_project_by_name_or_id(clean_db, tmp_path):
    beta = new_project("beta")
    a = write_jsonl(tmp_path / "a.jsonl", {"prompt": "q-default", "chosen": "yes", "rejected": "no"})
    b = write_jsonl(tmp_path / "b.jsonl", {"prompt": "q-beta", "chosen": "yes", "rejected": "no"})
    assert runner.invoke(app, ["import", str(a), "--kind", "pairs"]).exit_code == 0
    result = runner.invoke(app, ["import", str(b), "--kind", "pairs", "--project", "beta"])
    assert result.exit_code == 0, result.output
    # The same prompt set name in two projects: two prompt sets.
    assert prompt_sets() == {("imported", "default"), ("imported", "beta")}

    for ref in ("beta", str(beta)):
        out = runner.invoke(app, ["export", "pairs", "-o", "-", "--project", ref])
        assert out.exit_code == 0, out.output
        assert [json.loads(x)["prompt"] for x in out.stdout.splitlines() if x.startswith("{")] == ["q-beta"]
    everything = runner.invoke(app, ["export", "pairs", "-o", "-"])
    assert sorted(json.loads(x)["prompt"] for x in everything.stdout.splitlines() if x.startswith("{")) == [
        "q-beta",
        "q-default",
    ]
    # A name two projects use needs the project; the error names the field.
    clash = runner.invoke(app, ["export", "pairs", "-o", "-", "--prompt-set", "imported"])
    assert clash.exit_code == 2 and "prompt_set" in clash.output
    one = runner.invoke(
        app, ["export", "rankings", "-o", "-", "--prompt-set", "imported", "--project", "default"]
    )
    assert one.exit_code == 0, one.output
    assert [json.loads(x)["prompt"]["text"] for x in one.stdout.splitlines() if x.startswith("{")] == [
        "q-default"
    ]


def test_an_unknown_project_fails_and_writes_nothing(clean_db, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", {"prompt": "q"})
    result = runner.invoke(app, ["import", str(f), "--kind", "prompts", "--project", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.output
    assert prompt_sets() == set()
    assert runner.invoke(app, ["export", "pairs", "-o", "-", "--project", "999999"]).exit_code == 2


def test_rounds_and_generation_jobs_are_queued_in_the_named_project(clean_db):
    beta = new_project("beta")
    assert runner.invoke(app, ["round", "--project", "beta"]).exit_code == 0
    assert runner.invoke(app, ["generate", "--project", str(beta), "--prompts", "2"]).exit_code == 0
    assert runner.invoke(app, ["round"]).exit_code == 0
    with session_scope() as s:
        default_id = projects_repo.default_project_id(s)
        rows = s.execute(select(Round.kind, Round.project_id).order_by(Round.id)).all()
    assert [(k.value, p) for k, p in rows] == [("train", beta), ("generate", beta), ("train", default_id)]


def test_demonstrations_land_in_the_projects_set_and_external_version(clean_db, tmp_path):
    beta = new_project("beta")
    f = write_jsonl(tmp_path / "d.jsonl", {"prompt": "q", "completion": "a written answer"})
    result = runner.invoke(app, ["import-demonstrations", str(f), "--project", "beta"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        externals = s.execute(
            select(ModelVersion.name, ModelVersion.project_id).where(ModelVersion.kind == ModelKind.external)
        ).all()
    assert [p for _, p in externals] == [beta]
    assert {p for _, p in prompt_sets()} == {"beta"}


def test_users_join_the_projects_given(clean_db):
    new_project("beta")
    new_project("gamma")
    result = runner.invoke(app, ["users", "add", "ann", "--password", "pw-123456789", "--project", "beta"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["users", "add", "bob", "--password", "pw-123456789"]).exit_code == 0
    assert runner.invoke(app, ["users", "join", "bob", "--project", "gamma"]).exit_code == 0
    assert runner.invoke(app, ["users", "leave", "bob", "--project", "default"]).exit_code == 0

    with session_scope() as s:
        members = {
            u.username: sorted(p.name for p in projects.projects_of(s, u)) for u in s.scalars(select(User))
        }
    assert members == {"ann": ["beta"], "bob": ["gamma"]}
    assert runner.invoke(app, ["users", "join", "nobody", "--project", "gamma"]).exit_code != 0


def test_eval_rm_takes_the_projects_newest_reward_model(clean_db, tmp_path):
    from tests.factories import make_model_version

    with session_scope() as s:
        make_project(s, "beta")
        other = make_model_version(s, "default-rm", kind=ModelKind.reward)
        other.adapter_path = "reward-default-rm"
    pairs = write_jsonl(tmp_path / "pairs.jsonl", {"prompt": "q", "chosen": "a", "rejected": "b"})
    # beta has no reward model of its own: the default project's is not used for it.
    result = runner.invoke(app, ["eval-rm", str(pairs), "--project", "beta"])
    assert result.exit_code != 0
    assert "no reward model version yet" in str(result.exception or result.output)
    assert runner.invoke(app, ["eval-rm", str(pairs), "--project", "nope"]).exit_code != 0
