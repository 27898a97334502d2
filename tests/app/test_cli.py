"""`rankloop import`, `export` and `demo`, in-process (CliRunner) and as the real console script."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app
from app.config import get_settings
from app.db import session_scope
from app.demo.seed import credentials_path
from app.orm import Prompt, Ranking
from tests.conftest import login

runner = CliRunner()
RANKLOOP = Path(sys.executable).parent / "rankloop"


def squeeze(text: str) -> str:
    """Output without whitespace and box-drawing characters, so wrapped lines compare whole."""
    return re.sub(r"[\s│╭╮╰╯─]", "", text)


def total(model) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def write_jsonl(path: Path, *objs) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_import_prints_the_summary(clean_db, tmp_path):
    f = write_jsonl(
        tmp_path / "groups.jsonl",
        {"prompt": "p1", "completions": ["a", "b", "c"], "ranking": [[0], [1, 2]]},
        {"prompt": "p2", "completions": ["a", "b"]},
    )
    result = runner.invoke(app, ["import", str(f), "--kind", "ranked-groups", "--prompt-set", "cli-set"])
    assert result.exit_code == 0, result.output
    assert "cli-set" in result.output
    assert re.search(r"rankings\s*│\s*1\b", result.output) and re.search(r"sets\s*│\s*2\b", result.output)
    assert (total(Prompt), total(Ranking)) == (2, 1)


def test_import_of_a_malformed_file_fails_with_the_line_and_writes_nothing(clean_db, tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"prompt": "fine"}\n{"prompt": ["not", "text"]}\n')
    result = runner.invoke(app, ["import", str(f), "--kind", "prompts"])
    assert result.exit_code == 2
    assert "line2:prompt.0:mustbeanobject" in squeeze(result.output)
    assert total(Prompt) == 0
    assert runner.invoke(app, ["import", str(tmp_path / "missing.jsonl"), "--kind", "prompts"]).exit_code != 0


def test_export_writes_files_and_stdout(clean_db, tmp_path):
    pairs = [{"prompt": f"q{i}", "chosen": f"yes{i}", "rejected": f"no{i}"} for i in range(3)]
    f = write_jsonl(tmp_path / "pairs.jsonl", *pairs)
    assert runner.invoke(app, ["import", str(f), "--kind", "pairs"]).exit_code == 0

    out = tmp_path / "out" / "pairs.jsonl"
    out.parent.mkdir()
    result = runner.invoke(app, ["export", "pairs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"], p["margin"]) for p in lines] == [
        (p["prompt"], p["chosen"], p["rejected"], 1) for p in pairs
    ]
    assert not (tmp_path / "out" / "pairs.jsonl.part").exists()

    result = runner.invoke(app, ["export", "rankings", "-o", "-", "--prompt-set", "imported"])
    assert result.exit_code == 0
    records = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [r["prompt"]["text"] for r in records] == ["q0", "q1", "q2"]

    missing = tmp_path / "none.jsonl"
    result = runner.invoke(app, ["export", "pairs", "-o", str(missing), "--prompt-set", "nope"])
    assert result.exit_code == 2 and not missing.exists()


def test_demo_seeds_once_and_prints_the_logins_once(clean_db, app_client):
    path = credentials_path(get_settings())
    path.unlink(missing_ok=True)
    first = runner.invoke(app, ["demo", "--no-serve", "--port", "8123"])
    assert first.exit_code == 0, first.output
    assert "http://127.0.0.1:8123/" in first.output
    logins = dict(re.findall(r"(admin|annotator) \((?:admin|annotator)\) password (\S+)", first.output))
    assert set(logins) == {"admin", "annotator"}
    assert str(path) in squeeze(first.output) or squeeze(str(path)) in squeeze(first.output)
    assert oasst_prompts() == 212

    second = runner.invoke(app, ["demo", "--no-serve"])
    assert second.exit_code == 0
    assert "already seeded" in second.output
    assert all(pw not in second.output for pw in logins.values())
    assert squeeze(str(path)) in squeeze(second.output)
    assert oasst_prompts() == 212

    # The printed logins work.
    login(app_client, "admin", logins["admin"])
    assert app_client.get("/admin").status_code == 200


def oasst_prompts() -> int:
    from app.orm import PromptSet

    with session_scope() as session:
        query = select(func.count()).select_from(Prompt).join(PromptSet).where(PromptSet.name == "oasst-demo")
        return session.scalar(query) or 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_console_script_imports_and_exports(clean_db, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", {"prompt": "from a subprocess", "chosen": "a", "rejected": "b"})
    env = {**os.environ, "DATABASE_URL": clean_db}
    done = subprocess.run(
        [str(RANKLOOP), "import", str(f), "--kind", "pairs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(RANKLOOP), "export", "pairs", "-o", "-"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["prompt"] for x in done.stdout.splitlines()] == ["from a subprocess"]


@pytest.mark.slow
def test_demo_serves_the_app(clean_db, tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": clean_db, "RANKLOOP_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(RANKLOOP), "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo did not answer on /healthz")
        assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/" in output
    assert "Worker log" in output
    assert "annotator (annotator) password" in output
    assert (tmp_path / "demo-credentials.txt").exists()
