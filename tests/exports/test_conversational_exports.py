"""Pairs in TRL's standard and conversational formats: each loads with `datasets`, passes TRL's own
preprocessing and trains a step of TRL's DPOTrainer and RewardTrainer as written; exports re-import
without losing a conversation's turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.exports import service
from app.exports.schemas import ExportFormat
from app.orm import Prompt, Role
from app.prompts.schemas import ImportKind
from tests.exports.test_exports import write_import

CHAT = [
    {"role": "system", "content": "say yes or no"},
    {"role": "user", "content": "is the sun big ?"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "is the moon big ?"},
]
FLAT = "System: say yes or no\n\nUser: is the sun big ?\n\nAssistant: yes\n\nUser: is the moon big ?"
NO, YES = [{"role": "assistant", "content": "no"}], [{"role": "assistant", "content": "yes"}]
PAIRS = [
    {"prompt": CHAT, "chosen": NO, "rejected": YES},
    {"prompt": "tell me about the cat", "chosen": "the cat is happy", "rejected": "no"},
]


def export_pairs(fmt: ExportFormat, **filters: Any) -> list[dict[str, Any]]:
    with session_scope() as session:
        return [json.loads(line) for line in service.pairs_export(session, format=fmt, **filters)]


def test_both_formats_hold_the_same_pairs(clean_db):
    write_import(PAIRS, "chat", ImportKind.pairs)
    standard = export_pairs(ExportFormat.standard)
    conversational = export_pairs(ExportFormat.conversational)
    assert [p["prompt"] for p in standard] == [FLAT, "tell me about the cat"]
    assert [p["prompt"] for p in conversational] == [
        CHAT,
        [{"role": "user", "content": "tell me about the cat"}],
    ]
    assert conversational[0]["chosen"] == [{"role": "assistant", "content": "no"}]
    assert conversational[1]["rejected"] == [{"role": "assistant", "content": "no"}]
    ids = ("margin", "ranking_id", "set_id", "prompt_id", "chosen_id", "rejected_id", "annotator_id")
    assert [[p[k] for k in ids] for p in standard] == [[p[k] for k in ids] for p in conversational]


def test_exports_reimport_with_their_turns(clean_db):
    write_import(PAIRS, "chat", ImportKind.pairs)
    with session_scope() as session:
        rankings = "".join(service.rankings_export(session)).encode()
    lines = "".join(json.dumps(p) + "\n" for p in export_pairs(ExportFormat.conversational))
    write_import([json.loads(line) for line in lines.splitlines()], "again", ImportKind.pairs)
    write_import([json.loads(line) for line in rankings.decode().splitlines()], "rankings-again")
    with session_scope() as session:
        stored = {(p.text, p.prompt_set_id): p.messages for p in session.scalars(select(Prompt))}
    assert sorted(m is not None for (text, _), m in stored.items() if text == FLAT) == [True, True, True]
    assert all(m == CHAT for (text, _), m in stored.items() if text == FLAT)
    assert all(m is None for (text, _), m in stored.items() if text != FLAT)


def test_the_api_and_the_admin_page_offer_both_formats(clean_db, app_client, api_token, make_user):
    write_import(PAIRS, "chat", ImportKind.pairs)
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    r = app_client.get("/api/v1/exports/pairs.jsonl", headers=admin, params={"format": "conversational"})
    assert [json.loads(x) for x in r.text.splitlines()] == export_pairs(ExportFormat.conversational)
    r = app_client.get("/api/v1/exports/pairs.jsonl", headers=admin, params={"format": "chatml"})
    assert r.status_code == 422
    name, password = make_user("root", Role.admin)
    from tests.conftest import login

    login(app_client, name, password)
    page = app_client.get("/admin/export").text
    assert '<option value="conversational">' in page and "format=conversational" in page


def test_the_cli_writes_either_format(clean_db, tmp_path: Path):
    from typer.testing import CliRunner

    from app.cli import app

    write_import(PAIRS, "chat", ImportKind.pairs)
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(app, ["export", "pairs", "-o", str(out), "--format", "conversational"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x) for x in out.read_text().splitlines()] == export_pairs(ExportFormat.conversational)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_trl_loads_and_trains_on_each_export_as_written(clean_db, tmp_path: Path, fmt: ExportFormat):
    """`datasets` reads the file; TRL's preprocessing takes it as it is; a DPOTrainer and a RewardTrainer
    step run on it. A conversation's every turn reaches the chat template in the conversational format."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer
    from trl.data_utils import is_conversational, maybe_apply_chat_template, maybe_extract_prompt

    from tests.worker.conftest import build_tokenizer, save_tiny_model
    from worker.models import format_prompt

    write_import(PAIRS, "chat", ImportKind.pairs)
    path = tmp_path / "pairs.jsonl"
    with session_scope() as session:
        path.write_text("".join(service.pairs_export(session, format=fmt)))
    dataset = load_dataset("json", data_files=str(path), split="train")
    assert len(dataset) == 2

    tokenizer = build_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    first = maybe_extract_prompt(dataset[0])
    assert is_conversational(first) == (fmt == ExportFormat.conversational)
    applied = maybe_apply_chat_template(first, tokenizer)
    if fmt == ExportFormat.conversational:
        from app.conversation import from_stored

        assert applied["prompt"] == format_prompt(tokenizer, from_stored(FLAT, CHAT))
        assert "<|im_start|>system\nsay yes or no" in applied["prompt"]
    else:
        assert applied["prompt"] == FLAT

    model_dir = save_tiny_model("llama", tmp_path / "tiny")
    torch.set_num_threads(1)
    common: dict[str, Any] = {
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "no",
    }
    dpo = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert dpo.train().global_step == 1
    reward_model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    reward = RewardTrainer(
        model=reward_model,
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert reward.train().global_step == 1
