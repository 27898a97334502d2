"""The loop benchmark's pure parts: PL sampling, ties, calibration, Wilson interval, oracle loading, stage
timing from a round's log, the JSON report. No model, no database."""

from __future__ import annotations

import json
import math
import random
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from bench.loop import report
from bench.loop.options import parse_args, round_overrides, split_prompts
from bench.loop.oracles import OracleError, length_target, lexical_warmth, load_oracle, no_lists
from bench.loop.product import Api, ProductError, stage_seconds, wait_round
from bench.loop.simulate import (
    calibrate,
    expected_agreement,
    observed_agreement,
    pl_tiers,
    sigmoid,
    tie_groups,
    untied_gaps,
    wilson_interval,
    win_rate,
)


def test_near_equal_scores_tie_and_the_groups_come_best_first():
    assert tie_groups([1.0, 3.0, 1.0 + 1e-12, 2.0]) == [[1], [3], [0, 2]]
    # Relative epsilon: 1e6 and 1e6 + 0.5 are equal to 1e-6 relative.
    assert tie_groups([1e6, 1e6 + 0.5, 0.0], rel_eps=1e-6) == [[0, 1], [2]]
    assert tie_groups([1.0, 1.1], abs_eps=0.2) == [[0, 1]]
    # The same scores always give the same ties in the sampled ranking.
    tiers = pl_tiers([5.0, 5.0, 1.0], 1.0, random.Random(0))
    assert sorted(map(sorted, tiers)) == [[0, 1], [2]]


def test_pl_pairwise_frequency_matches_sigmoid_of_the_gap():
    rng = random.Random(1)
    scores, temperature, n = [0.0, 1.0, 0.3, -2.0], 0.8, 20000
    above = 0
    for _ in range(n):
        tiers = pl_tiers(scores, temperature, rng)
        position = {i: t for t, tier in enumerate(tiers) for i in tier}
        above += position[1] < position[0]
    expected = sigmoid((1.0 - 0.0) / temperature)
    assert abs(above / n - expected) < 0.015


def test_calibration_hits_its_target_on_synthetic_scores():
    rng = random.Random(2)
    sets = [[rng.gauss(0, 3) for _ in range(4)] for _ in range(200)]
    for target in (0.6, 0.73, 0.9):
        cal = calibrate(sets, target)
        assert cal.pairs == 1200 and cal.tied_pairs == 0
        assert abs(cal.agreement - target) < 1e-6
        # Simulated: two annotators per set agree on about the target share of pairs.
        pairs = [(pl_tiers(s, cal.temperature, rng), pl_tiers(s, cal.temperature, rng)) for s in sets * 5]
        assert abs(observed_agreement(pairs) - target) < 0.02
    # Agreement falls as the temperature rises.
    gaps, _ = untied_gaps(sets)
    assert (
        expected_agreement(gaps, 0.1) > expected_agreement(gaps, 1.0) > expected_agreement(gaps, 10.0) > 0.5
    )


def test_calibration_edge_cases():
    cal = calibrate([[1.0, 1.0], [2.0]], 0.73)
    assert cal.pairs == 0 and cal.tied_pairs == 1 and math.isnan(cal.agreement) and cal.temperature == 1.0
    with pytest.raises(ValueError):
        calibrate([[0.0, 1.0]], 0.5)
    assert abs(expected_agreement([0.0 + 1e-300], 1.0) - 0.5) < 1e-12


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)  # the textbook 8/10 interval
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and round(low, 4) == 0.7225


def test_win_rate_counts_ties_half():
    wr = win_rate([3.0, 1.0, 2.0, 5.0], [1.0, 1.0, 4.0, 0.0])
    assert (wr.wins, wr.ties, wr.losses) == (2, 1, 1)
    assert wr.rate == 2.5 / 4
    assert (wr.low, wr.high) == wilson_interval(2.5, 4)
    same = win_rate([1.0, 2.0], [1.0, 2.0])
    assert same.rate == 0.5 and same.ties == 2


def test_shipped_oracles_rank_their_trait():
    assert (
        length_target("q", "word " * 60) > length_target("q", "word " * 20) > length_target("q", "w " * 200)
    )
    assert lexical_warmth("q", "thank you, happy to help, please ask") > lexical_warmth("q", "no idea at all")
    assert no_lists("q", "Plain prose here.\nMore prose.") > no_lists("q", "- one\n- two\nok")


def test_oracle_loads_from_a_file_and_from_a_module(tmp_path: Path):
    path = tmp_path / "my_oracle.py"
    path.write_text(
        textwrap.dedent("""
        def score(prompt, completion):
            return completion.count("!")
    """)
    )
    fn = load_oracle(f"{path}:score")
    assert fn("p", "a!!") == 2
    assert load_oracle("bench.loop.oracles:length_target") is length_target
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_oracle("my_oracle:score")("p", "!") == 1
    finally:
        sys.path.remove(str(tmp_path))
    for bad in ("no-colon", f"{path}:missing", f"{tmp_path}/nope.py:score", "no_such_module_xyz:f"):
        with pytest.raises(OracleError):
            load_oracle(bad)


def test_prompts_split_is_seeded_and_disjoint():
    prompts = [f"p{i}" for i in range(20)]
    pool, evals = split_prompts(prompts, 12, 5, seed=3)
    assert len(pool) == 12 and len(evals) == 5 and not set(pool) & set(evals)
    assert split_prompts(prompts, 12, 5, seed=3) == (pool, evals)
    assert split_prompts(prompts, 12, 5, seed=4) != (pool, evals)
    with pytest.raises(SystemExit):
        split_prompts(prompts, 16, 5, seed=0)


def test_stage_seconds_from_the_round_log():
    detail = {
        "started_at": "2026-11-30T23:59:50+00:00",
        "finished_at": "2026-12-01T00:01:00+00:00",
        "log_tail": [
            "23:59:50 attempt 1 on cpu",
            "23:59:52 stage snapshot",
            "23:59:55 stage reward",
            "00:00:30 stage policy",
            "00:00:30 published",
            "00:00:50 stage generate",
        ],
    }
    stages = stage_seconds(detail)
    assert stages == {"start": 2.0, "snapshot": 3.0, "reward": 35.0, "policy": 20.0, "generate": 10.0}
    assert sum(stages.values()) == 70.0
    assert stage_seconds({"started_at": None, "finished_at": None}) == {}


def test_json_report_shape(tmp_path: Path):
    row = {
        "round": 1,
        "rankings": 10,
        "round_seconds": 3.5,
        "winrate_vs_base": 0.6,
        "winrate_vs_base_ci": [0.4, 0.8],
        "winrate_vs_parent": 0.55,
        "reward_accuracy": 0.7,
        "human_winrate": None,
        "stage_seconds": {"reward": 2.0},
    }
    path = tmp_path / "r.json"
    report.write_json(path, "o:f", [row])
    data = json.loads(path.read_text())
    assert list(data) == ["oracle", "rounds"]
    assert list(data["rounds"][0])[: len(report.JSON_KEYS)] == list(report.JSON_KEYS)
    report.write_svg(tmp_path / "p.svg", [row], "o:f")
    assert (tmp_path / "p.svg").read_text().startswith("<svg")


def test_the_table_shows_the_product_round_and_wins_ties_losses():
    from rich.console import Console

    row = {
        "round": 1,
        "round_id": 2,
        "rankings": 64,
        "round_seconds": 600.0,
        "winrate_vs_base": 0.578125,
        "winrate_vs_base_ci": [0.41, 0.73],
        "winrate_vs_base_counts": [8, 21, 3],
        "winrate_vs_parent": 0.55,
        "reward_accuracy": 0.52,
        "human_winrate": None,
    }
    console = Console(width=200, record=True)
    console.print(report.rounds_table([row], "o:f"))
    text = console.export_text()
    assert "product round" in text and "#2" in text
    assert "8/21/3" in text and "0.58 [0.41, 0.73]" in text


def _api(handler: object) -> Api:
    api = Api("http://product.test", "token")
    api.client = httpx.Client(base_url="http://product.test/api/v1", transport=httpx.MockTransport(handler))
    return api


def test_a_dropped_poll_is_retried_but_a_write_is_not() -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True})

    assert _api(flaky).json("GET", "/rounds/1") == {"ok": True} and calls == ["GET", "GET"]
    calls.clear()
    with pytest.raises(httpx.RemoteProtocolError):
        _api(flaky).json("POST", "/rankings", json={})
    assert calls == ["POST"]


def test_waiting_on_a_round_stops_when_the_worker_has_died() -> None:
    running = {"status": "running", "progress": {"stage": "policy", "step": 3, "total": 16}}
    api = _api(lambda request: httpx.Response(200, json=running))
    with pytest.raises(ProductError, match=r"worker.*exited with code -9"):
        wait_round(
            api, 7, Console(quiet=True), "round 1", poll=0, dead=lambda: "`app worker` exited with code -9"
        )


def test_a_round_outlives_an_api_that_stops_answering_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.loop.product as product

    monkeypatch.setattr(product.time, "sleep", lambda seconds: None)
    calls: list[int] = []
    done = {"status": "succeeded", "progress": {"stage": "done", "step": 1, "total": 1}}

    def starved(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 9:  # more than one call's retries: two whole polls time out
            raise httpx.ReadTimeout("timed out")
        return httpx.Response(200, json=done)

    assert wait_round(_api(starved), 7, Console(quiet=True), "round 1", poll=0)["status"] == "succeeded"
    # ... but not when the worker is gone.
    calls.clear()
    with pytest.raises(ProductError, match=r"not answering.*exited"):
        wait_round(_api(starved), 7, Console(quiet=True), "r", poll=0, dead=lambda: "`app worker` exited")


def test_off_a_terminal_progress_is_a_line_per_stage_not_a_bar_drawn_at_the_end() -> None:
    import io

    states = iter(
        [
            {
                "status": "running",
                "progress": {"stage": "reward", "step": 0, "total": 8, "eta_seconds": 40.0},
            },
            {"status": "running", "progress": {"stage": "reward", "step": 1, "total": 8}},
            {"status": "running", "progress": {"stage": "policy", "step": 2, "total": 16, "loss": 0.5}},
            {"status": "succeeded", "progress": {"stage": "done", "step": 0, "total": 0}},
        ]
    )
    log = io.StringIO()
    console = Console(file=log, width=160)  # a file: not a terminal
    assert wait_round(_api(lambda r: httpx.Response(200, json=next(states))), 7, console, "round 1", poll=0)
    printed = [line for line in log.getvalue().splitlines() if line.startswith("round 1 ")]
    # One line as each stage starts (a second poll of the same stage within the minute prints nothing).
    assert printed[:3] == [
        "round 1 running: reward 0/8 ETA 40s",
        "round 1 running: policy 2/16 loss 0.5000",
        "round 1 succeeded: done 0/?",
    ]


def test_set_options_reach_the_round_config_and_win_over_the_benchs_own():
    from app.config import get_settings
    from app.training.config import RoundConfig

    sets = ["selection=uncertainty", "generate_prompts=16", "policy_method=grpo"]
    args = parse_args([*args_without_sets(), *(a for kv in sets for a in ("--set", kv))])
    overrides = round_overrides(args, pool=64)
    cfg = RoundConfig.resolve(overrides, get_settings())
    assert (cfg.selection, cfg.generate_prompts, cfg.policy_method) == ("uncertainty", 16, "grpo")
    assert cfg.auto_promote == "yes" and cfg.seed == args.seed
    default = RoundConfig.resolve(round_overrides(parse_args(args_without_sets()), 64), get_settings())
    assert default.selection == "random"
    # The bench's own round config (the one that met the target) applies unless --set says otherwise ...
    assert (default.policy_method, default.policy_epochs, default.max_length) == ("dpo_ranking", 3, 256)
    assert cfg.max_length == 256
    # ... and --product-defaults leaves the product's defaults.
    product = round_overrides(parse_args([*args_without_sets(), "--product-defaults"]), 64)
    own = RoundConfig.resolve(product, get_settings())
    assert own.policy_method == RoundConfig().policy_method and own.max_length == RoundConfig().max_length


def args_without_sets() -> list[str]:
    return ["--oracle", "bench/loop/oracles.py:length_target"]
