"""the hand-out lets go of a set it passes over, so it never waits while holding one: no deadlock

0014's `rankloop_next_task` locked the best open set, counted its slots again, and when the set had
filled in the meantime (or the lease could not be made) moved on to the next, keeping the first set's lock
to the end of the transaction. When no unlocked set was left it waited for a locked one. Two hand-outs
could then each hold a set the other waits for: fifty annotators on a few sets met that deadlock (caught
by tests/annotation/test_race.py), and PostgreSQL failed one of them after a second.

Two changes make the waits acyclic:
- Each attempt runs in its own subtransaction (a PL/pgSQL block with an EXCEPTION clause): a set passed
  over is rolled back, its lock released, before the next attempt. The gold pick is treated the same way.
- The waiting pick (nothing unlocked left) chooses the best set without a lock and then locks that one row
  by id. A locking `ORDER BY ... LIMIT 1` without SKIP LOCKED can lock several rows in one statement (a
  row whose newer version no longer qualifies stays locked while the scan moves on), in an order that
  changes as counts change, so two such statements could each hold a row the other waits for.
A waiting hand-out then holds only its annotator's row, which no other annotator's hand-out or submission
waits for; a submission holds one set and then its assignment (the one lock order). The price is one
subtransaction per hand-out. Fifty annotators on a few sets deadlocked in about one run of six of
tests/annotation/test_race.py before; none in 32 runs after.

Revision ID: 0016
Revises: 0015
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _handout_0014() -> ModuleType:
    # The fragments (columns, eligibility, pick) are 0014's, unchanged; only the function's body differs.
    spec = importlib.util.spec_from_file_location(
        "rankloop_migration_0014", Path(__file__).with_name("0014_handout_function.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _next_task(m: ModuleType) -> str:
    # 0014's head of the function, unchanged up to the gold pick (the lock on the annotator, their projects,
    # the current lease), with this body's three variables declared.
    head = m._NEXT_TASK[: m._NEXT_TASK.index("    -- Gold,")]
    head = head.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1).replace(
        "BEGIN\n", "    v_best integer;\n    v_wait boolean := false;\n    v_tries integer := 0;\nBEGIN\n", 1
    )
    body = f"""    -- Gold, with the project's rate: a random open gold set they have not ranked or skipped. A set that
    -- cannot be leased is let go (the block's rollback), as in the walk below.
    BEGIN
        SELECT s.id, j.lease_minutes INTO v_set, v_minutes
        {m._FROM}
        WHERE s.gold_tiers IS NOT NULL AND {m._ELIGIBLE}
          AND coalesce(j.gold_rate, p_gold_rate) > p_roll
        ORDER BY random()
        LIMIT 1
        FOR NO KEY UPDATE OF s SKIP LOCKED;
        IF v_set IS NOT NULL THEN
            v_now := clock_timestamp();
            v_candidates := ARRAY(
                SELECT c.id FROM comparison_set_items i JOIN candidates c ON c.id = i.candidate_id
                WHERE i.set_id = v_set AND NOT c.hidden ORDER BY i.position, c.id);
            IF cardinality(v_candidates) BETWEEN p_k_min AND p_k_max THEN
                v_assignment := rankloop_lease(
                    v_set, p_annotator, v_candidates, v_now, coalesce(v_minutes, p_lease_minutes));
            END IF;
            IF v_assignment IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'RLPAS';
            END IF;
        END IF;
    EXCEPTION WHEN SQLSTATE 'RLPAS' THEN
        v_assignment := NULL;  -- PL/pgSQL variables are not rolled back with the block
    END;
    IF v_assignment IS NOT NULL THEN
        RETURN QUERY SELECT * FROM rankloop_task(v_assignment);
        RETURN;
    END IF;

    -- The ordinary walk of ix_comparison_sets_handout. Each attempt is a subtransaction: a set found
    -- full once locked is rolled back, and so unlocked, before the next attempt.
    WHILE v_tries < p_attempts LOOP
        v_set := NULL;
        BEGIN
            IF NOT v_wait THEN
                {m._pick(skip_locked=True)}
                IF v_set IS NULL THEN
                    -- Nothing unlocked is left. Roll back what this pick locked on its way (a row
                    -- whose newer version no longer qualified stays locked), then wait, holding nothing.
                    RAISE EXCEPTION USING ERRCODE = 'RLWAI';
                END IF;
            ELSE
                -- What is left may be locked only for a moment by others' hand-outs or submissions:
                -- wait for the best such set rather than answer that nothing is left. Chosen without a
                -- lock, then locked by id: one row, so two waiting hand-outs never hold rows the other
                -- wants (a locking ORDER BY ... LIMIT 1 can lock several rows in a changing order).
                SELECT s.id INTO v_best
                {m._FROM}
                WHERE {m._ELIGIBLE}
                  AND s.gold_tiers IS NULL
                  AND {m._LIVE} < s.overlap
                  AND s.id <> ALL (v_exclude)
                {m._ORDER};
                IF v_best IS NULL THEN
                    RETURN;
                END IF;
                SELECT s.id, s.overlap, j.lease_minutes INTO v_set, v_overlap, v_minutes
                {m._FROM}
                WHERE s.id = v_best AND {m._ELIGIBLE}
                  AND s.gold_tiers IS NULL
                FOR NO KEY UPDATE OF s;
                IF v_set IS NULL THEN
                    v_set := v_best;
                    RAISE EXCEPTION USING ERRCODE = 'RLPAS';
                END IF;
            END IF;
            -- The locking SELECT may have read a snapshot older than the lock: count again, in new
            -- statements.
            v_now := clock_timestamp();
            v_candidates := ARRAY(
                SELECT c.id FROM comparison_set_items i JOIN candidates c ON c.id = i.candidate_id
                WHERE i.set_id = v_set AND NOT c.hidden ORDER BY i.position, c.id);
            SELECT count(*) INTO v_live FROM assignments l
            WHERE l.set_id = v_set
              AND (l.status = 'submitted' OR (l.status = 'leased' AND l.lease_expires_at > v_now));
            IF v_live < v_overlap AND cardinality(v_candidates) BETWEEN p_k_min AND p_k_max THEN
                v_assignment := rankloop_lease(
                    v_set, p_annotator, v_candidates, v_now, coalesce(v_minutes, p_lease_minutes));
            END IF;
            IF v_assignment IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'RLPAS';
            END IF;
        EXCEPTION
            WHEN SQLSTATE 'RLWAI' THEN
                v_wait := true;
                CONTINUE;
            WHEN SQLSTATE 'RLPAS' THEN
                v_assignment := NULL;  -- PL/pgSQL variables are not rolled back with the block
                v_exclude := v_exclude || v_set;
                v_tries := v_tries + 1;
                CONTINUE;
        END;
        RETURN QUERY SELECT * FROM rankloop_task(v_assignment);
        RETURN;
    END LOOP;
    RETURN;
END $$
"""  # noqa: S608 (constant fragments of migration 0014, no input)
    return head + body


def upgrade() -> None:
    op.execute(_next_task(_handout_0014()))


def downgrade() -> None:
    op.execute(_handout_0014()._NEXT_TASK.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
