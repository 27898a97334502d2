"""Conversations in the worker: the chat template gets the whole conversation (system, earlier turns, reply),
in generation, reward scoring and the TRL datasets of DPO, SFT and RLOO; plain-text prompts work as before."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from trl.data_utils import is_conversational, maybe_apply_chat_template

from app.config import get_settings
from app.conversation import Message
from app.orm import Ranking
from app.prompts import service as prompts_service
from app.prompts.schemas import ImportKind
from tests.worker.conftest import build_tokenizer
from worker import candidates, generation, models, policy_dpo, policy_online, sft, snapshot
from worker.data import PreferencePair, split_by_prompt
from worker.lora_policy import cap_prompt

CHAT = (
    Message("system", "say yes or no"),
    Message("user", "is the sun big ?"),
    Message("assistant", "yes"),
    Message("user", "is the moon big ?"),
)
RENDERED = (
    "<|im_start|>system\nsay yes or no<|im_end|>\n"
    "<|im_start|>user\nis the sun big ?<|im_end|>\n"
    "<|im_start|>assistant\nyes<|im_end|>\n"
    "<|im_start|>user\nis the moon big ?<|im_end|>\n"
)


def test_the_chat_template_gets_every_turn_not_one_flattened_user_message() -> None:
    tokenizer = build_tokenizer()
    assert models.format_prompt(tokenizer, CHAT) == RENDERED + "<|im_start|>assistant\n"
    assert models.format_exchange(tokenizer, CHAT, "no") == RENDERED + "<|im_start|>assistant\nno<|im_end|>\n"
    # Plain texts are one user turn, as before.
    assert models.format_prompt(tokenizer, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"

    tokenizer.chat_template = None
    flat = "System: say yes or no\n\nUser: is the sun big ?\n\nAssistant: yes\n\nUser: is the moon big ?"
    assert models.format_prompt(tokenizer, CHAT) == flat
    assert models.format_exchange(tokenizer, CHAT, " no") == flat + " no"


def test_trl_renders_the_trainers_records_exactly_as_generation_does() -> None:
    """The DPO and SFT datasets are TRL's conversational format; TRL's own preprocessing turns them into the
    text generation and scoring use (so the policy trains on what it is asked)."""
    tokenizer = build_tokenizer()
    pair = PreferencePair(CHAT, "no", "yes")
    dpo = policy_dpo._to_records([pair], conversational=True)[0]
    assert is_conversational(dpo)
    applied = maybe_apply_chat_template(dpo, tokenizer)
    assert applied["prompt"] == models.format_prompt(tokenizer, CHAT)
    assert applied["prompt"] + applied["chosen"] == models.format_exchange(tokenizer, CHAT, "no")

    demo = sft._to_records([sft.Demonstration(CHAT, "no")], conversational=True)[0]
    assert maybe_apply_chat_template(demo, tokenizer)["prompt"] == models.format_prompt(tokenizer, CHAT)
    # Without a template the standard format carries the flattened text.
    assert policy_dpo._to_records([pair], conversational=False)[0]["prompt"].startswith("System: say yes")


def test_rloo_hands_the_reward_model_the_whole_conversation() -> None:
    trl_prompt = [{"role": m.role, "content": m.content} for m in CHAT]
    assert policy_online.prompt_of(trl_prompt) == CHAT
    assert policy_online.prompt_of([{"role": "user", "content": "hi"}]) == "hi"
    assert policy_online.prompt_of("hi") == "hi"


def test_a_long_conversation_loses_its_oldest_turns_first() -> None:
    tokenizer = build_tokenizer()
    # Content tokens: system 4, user 5, assistant 1, user 5.
    assert cap_prompt(tokenizer, CHAT, 20) == CHAT
    # Without the first exchange it fits: the system turn stays, the rest starts with a user turn.
    assert cap_prompt(tokenizer, CHAT, 10) == (CHAT[0], CHAT[3])
    # Only the question's end left.
    assert cap_prompt(tokenizer, CHAT, 3) == "moon big ?"
    assert cap_prompt(tokenizer, "the cat is big", 2) == "is big"


def test_split_by_prompt_mixes_texts_and_conversations() -> None:
    pairs = [PreferencePair(p, "a", "b") for p in ["x", CHAT, "y", CHAT[1:]]]
    split = split_by_prompt(pairs, 0.5, seed=0)
    assert len(split.heldout_prompts) == 2
    assert {p.prompt for p in split.train} | set(split.heldout_prompts) == {"x", "y", CHAT, CHAT[1:]}


def test_generation_renders_the_conversation(tiny_llama: Path) -> None:
    model, tokenizer = models.load_causal_lm(str(tiny_llama), device=models.pick_device("cpu"))
    cfg = generation.CandidateConfig(
        k=2, seed=3, sampling=generation.SamplingParams(temperature=1.0, max_new_tokens=4)
    )
    result = generation.generate_candidates(model, tokenizer, [CHAT, "write a poem"], cfg)
    expected = len(tokenizer(models.format_prompt(tokenizer, CHAT), add_special_tokens=False)["input_ids"])
    assert {c.prompt_tokens for c in result.candidates[0]} == {expected}


def test_the_round_reads_conversations_from_the_database(db) -> None:
    messages = [{"role": m.role, "content": m.content} for m in CHAT]
    pairs = [
        {"prompt": messages, "chosen": [{"role": "assistant", "content": "no"}], "rejected": "yes"},
        {"prompt": "plain", "chosen": "a", "rejected": "b"},
    ]
    lines = "".join(json.dumps(p) + "\n" for p in pairs).encode()
    prompts_service.import_file(db, get_settings(), lines, ImportKind.pairs, "t")
    unranked = json.dumps({"prompt": messages[1:]}).encode()
    prompts_service.import_file(db, get_settings(), unranked, ImportKind.prompts, "t")

    loaded = snapshot.load_training_data(db, list(db.scalars(select(Ranking.id))), "all")
    assert {r.prompt for r in loaded.rankings} == {CHAT, "plain"}
    assert snapshot.unlabelled_prompts(db, 10, seed=0) == [CHAT[1:]]
    assert {p.prompt for p in candidates.prompts_needing_work(db, 10)} == {CHAT, "plain", CHAT[1:]}
