"""The demo seed: Open-Assistant groups as open sets, two logins shown once and kept in a 0600 file."""

from __future__ import annotations

import json
import stat

from sqlalchemy import func, select

from app.auth import service as auth_service
from app.auth.security import verify_password
from app.config import Settings
from app.demo import seed as demo
from app.orm import (
    Assignment,
    Candidate,
    ComparisonSet,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    Role,
    SetStatus,
    User,
)


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def ranked_group_sizes() -> list[int]:
    sizes = []
    stack = [json.loads(line)["prompt"] for line in demo.DATA_FILE.read_text().splitlines()]
    while stack:
        m = stack.pop()
        n = sum(1 for r in m["replies"] if r["role"] == "assistant" and r.get("rank") is not None)
        if m["role"] == "prompter" and n >= 2:
            sizes.append(n)
        stack.extend(m["replies"])
    return sizes


def test_first_run_seeds_open_sets_and_logins(db, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", overlap=3)
    result = demo.seed(db, settings)
    assert result.seeded
    sizes = ranked_group_sizes()
    assert len(sizes) == 212

    prompt_set = db.scalars(select(PromptSet).where(PromptSet.name == "oasst-demo")).one()
    assert "Open-Assistant" in prompt_set.description
    oasst_prompts = db.scalar(
        select(func.count()).select_from(Prompt).where(Prompt.prompt_set_id == prompt_set.id)
    )
    assert oasst_prompts == result.summary.prompts == 212
    in_demo_set = Candidate.prompt_id.in_(select(Prompt.id).where(Prompt.prompt_set_id == prompt_set.id))
    assert count_where(db, Candidate, in_demo_set) == sum(sizes)
    sets = db.scalars(select(ComparisonSet)).all()
    assert len(sets) == 212
    assert {(s.status, s.overlap) for s in sets} == {(SetStatus.open, 3)}
    assert sorted(len(s.items) for s in sets) == sorted(sizes)
    # Waiting for annotators: Open-Assistant's own ranks are not imported by the demo.
    assert count(db, Ranking) == count(db, Assignment) == 0
    version = db.scalars(select(ModelVersion)).one()
    assert (version.name, version.kind, version.status) == (
        "oasst-human",
        ModelKind.external,
        ModelStatus.active,
    )

    creds = {c.username: c for c in result.credentials}
    assert {(c.username, c.role) for c in result.credentials} == {
        ("admin", "admin"),
        ("annotator", "annotator"),
    }
    for username, role in (("admin", Role.admin), ("annotator", Role.annotator)):
        user = db.scalars(select(User).where(User.username == username)).one()
        assert user.role == role and user.active
        assert user.password_hash != creds[username].password
        assert verify_password(creds[username].password, user.password_hash)

    path = result.credentials_path
    assert path == (tmp_path / "data" / "demo-credentials.txt").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert all(f"{c.username} ({c.role}): {c.password}" in text for c in result.credentials)


def test_second_run_changes_nothing_and_shows_no_password(db, tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = demo.seed(db, settings)
    before = {m.__name__: count(db, m) for m in (Prompt, Candidate, ComparisonSet, User, ModelVersion)}
    again = demo.seed(db, settings)
    assert not again.seeded and again.credentials == [] and again.summary is None
    assert again.credentials_path == first.credentials_path
    assert {
        m.__name__: count(db, m) for m in (Prompt, Candidate, ComparisonSet, User, ModelVersion)
    } == before


def test_an_existing_account_is_left_alone(db, tmp_path):
    auth_service.create_user(db, "admin", Role.admin, "my-own-password")
    result = demo.seed(db, Settings(data_dir=tmp_path))
    assert [c.username for c in result.credentials] == ["annotator"]
    admin = db.scalars(select(User).where(User.username == "admin")).one()
    assert verify_password("my-own-password", admin.password_hash)
    assert "admin (admin)" not in result.credentials_path.read_text()


def test_credentials_file_is_private_even_if_it_existed(tmp_path):
    path = tmp_path / "demo-credentials.txt"
    path.write_text("old")
    path.chmod(0o644)
    demo.write_credentials(path, [demo.Credential("a", "admin", "pw")])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "a (admin): pw" in path.read_text() and "old" not in path.read_text()


def test_first_run_leaves_a_few_opening_prompts_for_the_default_model(db, tmp_path):
    demo.seed(db, Settings(data_dir=tmp_path / "data"))
    model_set = db.scalars(select(PromptSet).where(PromptSet.name == demo.MODEL_PROMPT_SET)).one()
    # Annotators see the model's candidates first, once the worker has generated them.
    assert model_set.priority == 1
    prompts = db.scalars(select(Prompt).where(Prompt.prompt_set_id == model_set.id)).all()
    assert len(prompts) == demo.MODEL_PROMPTS
    assert all("Assistant:" not in p.text for p in prompts)
    # No sets yet: these are exactly the prompts the worker's generation picks up. Their people's replies
    # wait, in no set, for the first generation to put them beside the default model's.
    ids = [p.id for p in prompts]
    assert count_where(db, ComparisonSet, ComparisonSet.prompt_id.in_(ids)) == 0
    human = db.execute(
        select(Candidate.prompt_id, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(Candidate.prompt_id.in_(ids))
    ).all()
    assert {p for p, _ in human} == set(ids) and {n for _, n in human} == {"oasst-human"}
    overrides = demo.first_generation(db)
    assert overrides["prompt_set_id"] == model_set.id and overrides["human_replies"] == demo.HUMAN_REPLIES


def count_where(session, model, condition) -> int:
    return session.scalar(select(func.count()).select_from(model).where(condition)) or 0


def test_demo_queues_one_first_generation_and_follows_it_until_done(clean_db):
    from app.db import session_scope
    from app.demo.cli import first_generation as _demo_generation
    from app.orm import Round, RoundKind, RoundStatus

    first = _demo_generation()
    assert first is not None
    # A restarted demo follows the same unfinished run instead of queueing another.
    assert _demo_generation() == first
    with session_scope() as s:
        row = s.get(Round, first)
        assert (row.kind, row.trigger, row.config["generate_prompts"]) == (
            RoundKind.generate,
            "demo",
            demo.MODEL_PROMPTS,
        )
        row.status = RoundStatus.succeeded
    assert _demo_generation() is None
