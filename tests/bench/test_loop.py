"""bench/loop end to end on a tiny random model: one round-0 generation, one training round, measured.

Checks the measurement machinery (calibration, win-rates and their intervals, reward accuracy through
`rankloop eval-rm`, the human win-rate through the API, the JSON report), not the speed or what a tiny
random model learns. Uses TEST_DATABASE_URL's server when set, else the embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from bench.loop import report
from bench.loop.run import main
from bench.loop.simulate import wilson_interval
from tests.worker.conftest import PLAIN_WORDS, save_tiny_model

pytestmark = pytest.mark.slow

TINY_ROUND = {  # one pass of everything on a handful of short texts
    "device": "cpu",
    "sft": "off",
    "max_length": 64,
    "max_prompt_length": 40,
    "max_new_tokens": 8,
    "reward_batch_size": 4,
    "policy_batch_size": 8,
    "heldout_fraction": 0.34,
    "policy_heldout_fraction": 0,
    "synthetic_prompts": 0,
    "eval_prompts": 1,
    "k": 3,
}


def test_one_tiny_round_is_measured_and_reported(tmp_path: Path):
    model = save_tiny_model("llama", tmp_path / "tiny")
    rng = random.Random(0)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(" ".join(rng.choice(PLAIN_WORDS) for _ in range(5)) + "\n" for _ in range(16)))
    oracle = tmp_path / "oracle.py"
    oracle.write_text("def chars(prompt, completion):\n    return float(len(completion))\n")
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    argv = [
        f"--oracle={oracle}:chars",
        "--rounds=1",
        "--annotators=2",
        "--prompts=8",
        "--eval-prompts=6",
        f"--prompt-file={prompts}",
        f"--model={model}",
        f"--out={out}",
        f"--json={report_path}",
        *(f"--set={k}={v}" for k, v in TINY_ROUND.items()),
    ]
    if os.environ.get("TEST_DATABASE_URL"):
        argv.append(f"--database-url={os.environ['TEST_DATABASE_URL']}")
    assert main(argv) == 0

    data = json.loads(report_path.read_text())
    assert list(data) == ["oracle", "rounds"] and data["oracle"] == f"{oracle}:chars"
    assert [r["round"] for r in data["rounds"]] == [0, 1]
    for r in data["rounds"]:
        assert list(r)[: len(report.JSON_KEYS)] == list(report.JSON_KEYS)
        assert isinstance(r["rankings"], int) and r["round_seconds"] > 0
        wins, ties, losses = r["winrate_vs_base_counts"]
        n = wins + ties + losses
        assert n == 6
        assert r["winrate_vs_base"] == pytest.approx((wins + ties / 2) / n)
        assert r["winrate_vs_base_ci"] == pytest.approx(list(wilson_interval(wins + ties / 2, n)))
        assert r["winrate_vs_base_ci"][0] <= r["winrate_vs_base"] <= r["winrate_vs_base_ci"][1]
        assert 0.0 <= r["winrate_vs_parent"] <= 1.0 and 0.0 <= r["reward_accuracy"] <= 1.0
        assert sum(r["stage_seconds"].values()) == pytest.approx(r["round_seconds"], abs=0.2)
    base, first = data["rounds"]
    # Round 0 is the base model against itself: same seeds, same replies, all ties.
    assert base["rankings"] == 0 and base["winrate_vs_base"] == 0.5 and base["winrate_vs_base_counts"][1] == 6
    assert base["human_winrate"] is None and "generate" in base["stage_seconds"]
    # Round 1 trained on every round-0 ranking: 8 sets, each ranked by both annotators.
    assert first["rankings"] == 16 and {"reward", "policy", "generate"} <= set(first["stage_seconds"])
    assert 0.0 <= first["human_winrate"] <= 1.0 and first["human_comparisons"] > 0
    assert first["human_winrate_ci"][0] <= first["human_winrate"] <= first["human_winrate_ci"][1]

    meta = json.loads((out / "run_meta.json").read_text())
    cal = meta["calibration"]
    if cal["pairs"]:
        assert cal["agreement"] == pytest.approx(0.73, abs=1e-6)
    assert meta["reward_eval_pairs"] >= 0
    assert (out / "winrate.svg").read_text().startswith("<svg")
    # Evaluation prompts never reached the product.
    imported = {json.loads(line)["prompt"] for line in (out / "train_prompts.jsonl").read_text().splitlines()}
    evals = {json.loads(line)["prompt"] for line in (out / "eval_prompts.jsonl").read_text().splitlines()}
    assert not imported & evals and len(imported) == 8 and len(evals) == 6
