"""Stage 6: K new candidates for prompts that need work, the new and the active policy in each set (or one
chosen version), with stored human-written replies beside them when the config asks (`human_replies`).

Every candidate of the new sets is then scored by the newest reward model (the round's own in a training
round): the reward model's predicted win-rate of the new policy over the active one, next to the blind human
win-rate from the same sets, is the reward-hacking alarm (app.quality.reward_signals).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from app.conversation import PromptLike
from app.text import clean_generated
from app.training import selection
from app.training.config import ConfigError
from worker import candidates, launch, versions
from worker.stages.configs import candidate_config
from worker.stages.context import RoundContext, free_memory, parallel_threads, torch_threads

if TYPE_CHECKING:
    from worker.generation import GenerationTask

Member = candidates.NewCandidate | candidates.StoredCandidate


def stage_generate(ctx: RoundContext, new_policy_id: int | None) -> int:
    """K candidates per prompt needing work, new and active policy mixed in each set (or all from the
    config's model_version_id), plus up to human_replies stored human-written ones; returns sets made."""
    cfg = ctx.cfg
    with ctx.sessions() as session, session.begin():
        reward = versions.newest_reward(session, cfg.base_model, ctx.project_id)
        if reward is not None and reward.adapter_path is None:
            reward = None
        # Choosing by uncertainty writes candidates for a larger pool (without a reward model: random).
        choosing = cfg.selection == "uncertainty" and reward is not None
        pool = math.ceil(cfg.generate_prompts * cfg.selection_pool) if choosing else cfg.generate_prompts
        prompts = candidates.prompts_needing_work(session, pool, cfg.prompt_set_id or None, ctx.project_id)
        plan = _plan(session, cfg, new_policy_id, ctx.project_id)
        humans = candidates.human_replies(session, [p.id for p in prompts], cfg.human_replies)
    if not prompts:
        ctx.progress.log("no prompts need new candidates")
        return 0
    tasks = _tasks(ctx, plan, prompts)
    # With two processes allowed (a CPU host), a child process writes the first tasks while this one
    # writes the rest: a small model's decoding step gains little from a second core, a second process
    # doubles the replies per second.
    split = parallel_threads(ctx) if len(tasks) > 1 else None
    child_tasks, own_tasks = _halves(tasks) if split else ([], tasks)
    total = sum(_rows(t) for t in tasks)
    ctx.progress.stage("generate", total=total)
    ctx.progress.log(
        "generating for {} prompts: {}{}{}".format(
            len(prompts),
            ", ".join(f"{k} from {v.name}" for v, k in plan),
            f", up to {cfg.human_replies} human-written" if cfg.human_replies else "",
            f"; {sum(_rows(t) for t in child_tasks)} of the replies in a child process"
            if child_tasks
            else "",
        )
    )
    child = None
    if split and child_tasks:
        child = launch.start_stage(
            "generate", [t.task for t in child_tasks], threads=split[1], data_dir=ctx.data_dir
        )
    try:
        with torch_threads(split[0]) if split else contextlib.nullcontext():
            results = _generate_own(ctx, own_tasks, _Clock(ctx, total), total)
        if child is not None:
            if child.running():
                ctx.progress.log("waiting for the child process's replies")
            results = child.wait(None, ctx.progress.check) + results
            ctx.progress.update(total, total)
    finally:
        if child is not None:
            child.stop()
    per_prompt: list[list[tuple[versions.VersionRef, Any]]] = [[] for _ in prompts]
    for t, result in zip(tasks, results, strict=True):
        for i, cands in enumerate(result.candidates):
            per_prompt[t.start + i].extend((t.version, c) for c in cands)
    free_memory()

    sets: list[tuple[int, list[Member]]] = []
    dropped = blank = 0
    for prompt, generated in zip(prompts, per_prompt, strict=True):
        kept, near, empty = keep_candidates(ctx.round_id, generated, cfg.dedupe_threshold)
        dropped, blank = dropped + near, blank + empty
        # People's replies join the model's (k + human_replies is checked against the largest set size).
        kept.extend(humans.get(prompt.id, []))
        random.Random(cfg.seed + prompt.id).shuffle(kept)
        if len(kept) >= 2:  # a set needs two candidates to compare
            sets.append((prompt.id, kept))
    # Every candidate scored by the newest reward model (the round's own in a training round) before the
    # sets are stored: the scores choose the sets (uncertainty) and are kept with each set either way.
    texts = {p.id: p.prompt for p in prompts}
    scores = _score_sets(ctx, reward, [(texts[pid], kept) for pid, kept in sets])
    sets, chosen = _select(cfg, sets, scores, reward.id if reward else None, choosing)
    with ctx.sessions() as session, session.begin():
        stored = candidates.store_sets(session, sets, ctx.overlap, f"round:{ctx.round_id}", chosen)
        if reward is not None and scores is not None:
            candidates.store_reward_scores(
                session,
                reward.id,
                [
                    (cid, score)
                    for ids, how in zip(stored, chosen, strict=True)
                    for cid, score in zip(ids, how.scores["scores"], strict=True)
                ],
            )
    made = len(stored)
    used = cfg.selection if choosing else "random"
    ctx.progress.log(
        f"{made} new comparison sets ({used} selection); {dropped} near-duplicate and {blank} blank "
        "candidates dropped"
    )
    ctx.record(
        generation={
            "sets": made,
            "prompts": len(prompts),
            "near_duplicates_dropped": dropped,
            "blank_dropped": blank,
            "selection": used,
        }
    )
    return made


def keep_candidates(
    round_id: int, generated: list[tuple[versions.VersionRef, Any]], dedupe_threshold: float
) -> tuple[list[Member], int, int]:
    """One prompt's generated replies as new candidates: each text under the rule imported text follows
    (app.text: no NUL, control characters or lone surrogates), a reply with nothing visible left dropped,
    and near-duplicates of an earlier one dropped; with how many of each were dropped."""
    from worker.generation import is_near_duplicate

    kept: list[Member] = []
    near = blank = 0
    for version, cand in generated:
        text = clean_generated(cand.text)
        if text is None:
            blank += 1
            continue
        if any(is_near_duplicate(text, other.text, dedupe_threshold) for other in kept):
            near += 1
            continue
        kept.append(
            candidates.NewCandidate(
                model_version_id=version.id,
                text=text,
                seed=cand.seed,
                params={
                    **dataclasses.asdict(cand.params),
                    "finish_reason": cand.finish_reason,
                    "prompt_tokens": cand.prompt_tokens,
                    "completion_tokens": cand.completion_tokens,
                    "round_id": round_id,
                    "model_version": version.name,
                },
                truncated=cand.finish_reason == "length",
            )
        )
    return kept, near, blank


def _select(
    cfg: Any,
    sets: list[tuple[int, list[Member]]],
    scores: list[list[float]] | None,
    reward_id: int | None,
    choosing: bool,
) -> tuple[list[tuple[int, list[Member]]], list[candidates.SetSelection]]:
    """The sets to store and how each was chosen: all of them in order (random), or generate_prompts of the
    pool by uncertainty with the random share, in hand-out order with falling priority."""
    if not choosing or scores is None:
        how = [
            candidates.SetSelection(
                "random", 0.0, selection.scored("random", s, reward_id) if scores is not None else {}
            )
            for s in (scores if scores is not None else [[] for _ in sets])
        ]
        return sets, how
    uncertainties = [selection.uncertainty(s) for s in scores]
    picks = selection.choose(uncertainties, cfg.generate_prompts, cfg.selection_random_share, cfg.seed)
    chosen = [
        candidates.SetSelection(
            "uncertainty", p.priority, p.stored("uncertainty", scores[p.index], reward_id)
        )
        for p in picks
    ]
    return [sets[p.index] for p in picks], chosen


def _score_sets(
    ctx: RoundContext, reward: versions.VersionRef | None, sets: list[tuple[PromptLike, list[Member]]]
) -> list[list[float]] | None:
    """Each set's candidates' scores by the reward model (candidate order), in batches; None without one."""
    from worker.adapters import RewardHost

    exchanges = [(prompt, cand.text) for prompt, kept in sets for cand in kept]
    if reward is None or reward.adapter_path is None or not exchanges:
        return None
    ctx.progress.stage("score", total=len(exchanges))
    # On the shared base, as generation: the project's reward model is an adapter with its own head.
    host = RewardHost(reward.base_model or ctx.cfg.base_model, data_dir=ctx.data_dir)
    rm = host.use(reward.name, ctx.store.open(reward.adapter_path))
    step = max(1, ctx.cfg.generation_batch_size)
    # All at once, so score_exchanges batches replies of similar length across sets: chunks in candidate
    # order padded each batch to a long reply's length. Progress still counts candidates, in proportion to
    # the padded tokens done, so the ETA follows the work.
    work, done = max(1, rm.eval_tokens(exchanges, step)), 0

    def on_batch(tokens: int) -> None:
        nonlocal done
        done += tokens
        ctx.progress.update(min(len(exchanges), round(len(exchanges) * done / work)), len(exchanges))

    flat = rm.score_exchanges(exchanges, batch_size=step, on_batch=on_batch)
    del rm, host
    free_memory()
    ctx.progress.log(f"{len(flat)} candidates scored by {reward.name}")
    out: list[list[float]] = []
    start = 0
    for _, kept in sets:
        out.append([float(v) for v in flat[start : start + len(kept)]])
        start += len(kept)
    return out


@dataclasses.dataclass
class _Task:
    """One chunk of a version's candidates: which version, where its prompts start, what to generate."""

    version: versions.VersionRef
    start: int
    task: GenerationTask  # worker/generation.py


def _tasks(ctx: RoundContext, plan: list[tuple[versions.VersionRef, int]], prompts: list[Any]) -> list[_Task]:
    """The generation as chunks of `generation_batch_size` rows, version by version, each chunk seeded from
    the round, the version's place in the plan and the chunk's first prompt (the same replies on a retry)."""
    from worker.generation import GenerationTask

    cfg = ctx.cfg
    out: list[_Task] = []
    for offset, (version, k) in enumerate(plan):
        base = version.base_model or cfg.base_model
        # Opened through the model store: a local path, or a verified copy in this host's cache of a
        # version another host published.
        adapter = ctx.store.open(version.adapter_path) if version.adapter_path else None
        seed = random.Random(cfg.seed * 1000 + ctx.round_id * 10 + offset + ctx.claim.attempt).randrange(
            2**31
        )
        cand_cfg = candidate_config(cfg, k, seed)
        step = max(1, cfg.generation_batch_size // k)
        for start in range(0, len(prompts), step):
            chunk = [p.prompt for p in prompts[start : start + step]]
            task = GenerationTask(
                base, version.name, adapter, chunk, dataclasses.replace(cand_cfg, seed=seed + start)
            )
            out.append(_Task(version, start, task))
    return out


def _rows(t: _Task) -> int:
    return t.task.rows


def _halves(tasks: list[_Task]) -> tuple[list[_Task], list[_Task]]:
    """The first tasks for a child process, the rest for this one: the cut with the most even rows."""
    total = sum(_rows(t) for t in tasks)
    cuts = range(1, len(tasks))
    cut = min(cuts, key=lambda m: abs(total - 2 * sum(_rows(t) for t in tasks[:m])))
    return tasks[:cut], tasks[cut:]


def _generate_own(ctx: RoundContext, tasks: list[_Task], clock: _Clock, total: int) -> list[Any]:
    """This process's tasks, in order (worker.generation.generate_tasks). Live progress counts all `total`
    replies: with a child process writing the others, this process's count is scaled up, as if the child
    kept the same pace."""
    from worker.generation import generate_tasks

    scale = total / max(1, sum(_rows(t) for t in tasks))
    counted = SimpleNamespace(
        eta=lambda done, rows, _eta: ctx.progress.update(min(total, round(done * scale)), total)
    )
    return generate_tasks(
        [t.task for t in tasks],
        data_dir=ctx.data_dir,
        progress=counted,
        on_step=lambda done, rows: clock.chunk(
            round(done * scale), round(rows * scale), ctx.cfg.max_new_tokens
        ),
    )


def _plan(
    session: Any, cfg: Any, new_policy_id: int | None, project_id: int | None
) -> list[tuple[versions.VersionRef, int]]:
    """Which versions write how many of each set's K candidates."""
    if cfg.model_version_id:
        chosen = versions.get_version(session, cfg.model_version_id)
        if chosen is None or chosen.kind != "policy" or chosen.status == "failed":
            raise ConfigError(
                f"model_version_id {cfg.model_version_id} is not a policy version that can write replies"
            )
        return [(chosen, cfg.k)]
    newest = versions.get_version(session, new_policy_id)
    # Without any active policy the base model serves (and becomes the active version).
    compare_with = versions.active_policy(session, project_id) or versions.base_policy(
        session, cfg.base_model, project_id
    )
    if newest is not None and compare_with.id == newest.id:
        # The new policy is already active (auto-promoted): compare it with the one it replaced.
        compare_with = versions.get_version(session, versions.parent_id(session, newest.id)) or compare_with
    return _mix(cfg.k, cfg.new_policy_share, newest, compare_with)


class _Clock:
    """Step count and ETA of the generation stage from its first decoding steps, not its first finished
    batch: a batch of replies on a CPU takes minutes, and an admin should not wait that long to see one."""

    def __init__(self, ctx: RoundContext, total: int) -> None:
        self._progress = ctx.progress
        self._total = total
        self._started: float | None = None
        self._base = 0.0

    def chunk(self, done: int, rows: int, max_new_tokens: int) -> Callable[[int], None]:
        """The per-decoding-step callback for a batch of `rows` replies, `done` replies finished before it."""

        def on_step(step: int) -> None:
            now = time.monotonic()
            # A batch is done at max_new_tokens at the latest: an upper bound, so the ETA errs long.
            reached = done + rows * min(1.0, step / max(1, max_new_tokens))
            if self._started is None:
                self._started, self._base = now, reached
                self._progress.eta(done, self._total, None)
                return
            rate = (reached - self._base) / max(1e-6, now - self._started)
            eta = (self._total - reached) / rate if rate > 0 else None
            self._progress.eta(int(reached), self._total, eta)

        return on_step


def _mix(
    k: int, share: float, newest: versions.VersionRef | None, other: versions.VersionRef
) -> list[tuple[versions.VersionRef, int]]:
    """How many of each set's K candidates each version writes."""
    if newest is None or newest.id == other.id:
        return [(other, k)]
    k_new = min(k, max(0, round(k * share)))
    plan = [(newest, k_new), (other, k - k_new)]
    return [(v, n) for v, n in plan if n > 0]
