"""the annotation hot path as server-side functions: a hand-out and a submission's locks in one statement each

`rankloop_next_task` does what app/annotation/service.next_task did in five to seven statements (annotator
lock, current lease, gold pick, hand-out lock, fresh re-count, lease insert or renewal), with the same
rules, in one call; `rankloop_lock_submission` takes a submission's two locks (set, then assignment) and
reads the clock in one. Each statement inside a (volatile) plpgsql function takes a fresh snapshot under
READ COMMITTED, so the re-count after the set's row lock sees every submission committed before the lock
was granted, as the separate statements did. The statements themselves are the same SQL as before; what
goes away is a round trip and the client-side execution path per statement (about 0.2-0.3 ms of the app
server's CPU each). See app/annotation/handout.py for the rules in prose.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A lease of a locked set: insert the annotator's row, or renew their expired one in place (keeping the order
# they saw unless the visible candidates changed); NULL when they submitted or skipped the set already.
_LEASE = """
CREATE FUNCTION rankloop_lease(
    p_set integer, p_annotator integer, p_candidates integer[], p_now timestamptz, p_minutes integer
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_order integer[] := ARRAY(SELECT c FROM unnest(p_candidates) AS c ORDER BY random());
    v_expires timestamptz := p_now + make_interval(mins => p_minutes);
    v_id integer;
    v_status varchar;
    v_old integer[];
BEGIN
    INSERT INTO assignments (set_id, annotator_id, status, display_order, leased_at, lease_expires_at)
    VALUES (p_set, p_annotator, 'leased', v_order, p_now, v_expires)
    ON CONFLICT (set_id, annotator_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN v_id;
    END IF;
    SELECT id, status, display_order INTO v_id, v_status, v_old
    FROM assignments WHERE set_id = p_set AND annotator_id = p_annotator;
    IF v_id IS NULL OR v_status <> 'leased' THEN
        RETURN NULL;  -- submitted or skipped: never the same set twice
    END IF;
    UPDATE assignments
    SET display_order = CASE
            WHEN ARRAY(SELECT c FROM unnest(v_old) AS c ORDER BY c)
                 = ARRAY(SELECT c FROM unnest(p_candidates) AS c ORDER BY c)
            THEN display_order ELSE v_order END,
        leased_at = p_now,
        lease_expires_at = v_expires
    WHERE id = v_id;
    RETURN v_id;
END $$
"""

# The task row of an assignment: the lease, its set's prompt and project, and the candidates in the
# annotator's display order (those that still exist).
_TASK_COLUMNS = """
    assignment_id integer, set_id integer, annotator_id integer, status varchar,
    display_order integer[], leased_at timestamptz, lease_expires_at timestamptz, completed_at timestamptz,
    prompt_id integer, prompt_text text, prompt_messages jsonb,
    project_id integer, project_name varchar, project_guidelines text, project_flag_types varchar[],
    candidate_ids integer[], candidate_texts text[], candidate_truncated boolean[], candidate_hidden boolean[]
"""

_TASK = f"""
CREATE FUNCTION rankloop_task(p_assignment integer) RETURNS TABLE ({_TASK_COLUMNS})
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.set_id, a.annotator_id, a.status, a.display_order, a.leased_at, a.lease_expires_at,
           a.completed_at, p.id, p.text, p.messages, j.id, j.name, j.guidelines, j.flag_types,
           c.ids, c.texts, c.truncated, c.hidden
    FROM assignments a
    JOIN comparison_sets s ON s.id = a.set_id
    JOIN prompts p ON p.id = s.prompt_id
    JOIN projects j ON j.id = s.project_id
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(c.id ORDER BY o.n), '{{}}'), coalesce(array_agg(c.text ORDER BY o.n), '{{}}'),
               coalesce(array_agg(c.truncated ORDER BY o.n), '{{}}'),
               coalesce(array_agg(c.hidden ORDER BY o.n), '{{}}')
        FROM unnest(a.display_order) WITH ORDINALITY AS o (id, n)
        JOIN candidates c ON c.id = o.id
    ) AS c (ids, texts, truncated, hidden)
    WHERE a.id = p_assignment
$$
"""  # noqa: S608 (constant fragments of this file, no input)

# Conditions shared by the gold and the ordinary pick (app/annotation/handout.py says why each is there).
_ELIGIBLE = """
          s.status = 'open'
      AND s.project_id = ANY (v_projects)
      AND NOT ps.paused
      AND NOT EXISTS (
          SELECT 1 FROM assignments d
          WHERE d.set_id = s.id AND d.annotator_id = p_annotator AND d.status IN ('submitted', 'skipped'))
      AND EXISTS (
          SELECT count(*) FROM comparison_set_items i JOIN candidates c ON c.id = i.candidate_id
          WHERE i.set_id = s.id AND NOT c.hidden
          HAVING count(*) BETWEEN p_k_min AND p_k_max)
"""

_FROM = """
    FROM comparison_sets s
    JOIN prompts p ON p.id = s.prompt_id
    JOIN prompt_sets ps ON ps.id = p.prompt_set_id
    JOIN projects j ON j.id = s.project_id
"""

_LIVE = """(
          SELECT count(*) FROM assignments l
          WHERE l.set_id = s.id
            AND (l.status = 'submitted' OR (l.status = 'leased' AND l.lease_expires_at > v_now)))"""

_ORDER = """
    ORDER BY s.prompt_set_priority DESC, s.prompt_priority DESC, s.selection_priority DESC,
             s.submitted_count DESC, s.created_at, s.id
    LIMIT 1
"""


def _pick(skip_locked: bool) -> str:
    return f"""
    SELECT s.id, s.overlap, j.lease_minutes INTO v_set, v_overlap, v_minutes
    {_FROM}
    WHERE {_ELIGIBLE}
      AND s.gold_tiers IS NULL
      AND {_LIVE} < s.overlap
      AND s.id <> ALL (v_exclude)
    {_ORDER}
    FOR NO KEY UPDATE OF s{" SKIP LOCKED" if skip_locked else ""};
"""


_NEXT_TASK = f"""
CREATE FUNCTION rankloop_next_task(
    p_annotator integer, p_project integer, p_roll double precision, p_gold_rate double precision,
    p_lease_minutes integer, p_k_min integer, p_k_max integer, p_attempts integer
) RETURNS TABLE ({_TASK_COLUMNS}) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
    v_projects integer[];
    v_assignment integer;
    v_set integer;
    v_overlap integer;
    v_minutes integer;
    v_candidates integer[];
    v_live integer;
    v_exclude integer[] := '{{}}';
BEGIN
    -- One hand-out at a time per annotator (no double lease); the clock once the lock is granted.
    PERFORM 1 FROM users WHERE id = p_annotator FOR NO KEY UPDATE;
    v_now := clock_timestamp();
    -- Every project for an admin, their memberships for anyone else; narrowed to p_project if given.
    v_projects := ARRAY(
        SELECT pr.id FROM projects pr
        WHERE (EXISTS (SELECT 1 FROM users u WHERE u.id = p_annotator AND u.role = 'admin')
               OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = pr.id AND m.user_id = p_annotator))
          AND (p_project IS NULL OR pr.id = p_project));

    -- The current lease: the newest unexpired one on a set still open, of the projects asked for.
    SELECT a.id INTO v_assignment
    FROM assignments a JOIN comparison_sets s ON s.id = a.set_id
    WHERE a.annotator_id = p_annotator AND a.status = 'leased' AND a.lease_expires_at > v_now
      AND s.status = 'open' AND s.project_id = ANY (v_projects)
    ORDER BY a.leased_at DESC, a.id DESC
    LIMIT 1;
    IF v_assignment IS NOT NULL THEN
        RETURN QUERY SELECT * FROM rankloop_task(v_assignment);
        RETURN;
    END IF;

    -- Gold, with the project's rate: a random open gold set they have not ranked or skipped.
    SELECT s.id, j.lease_minutes INTO v_set, v_minutes
    {_FROM}
    WHERE s.gold_tiers IS NOT NULL AND {_ELIGIBLE}
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
            IF v_assignment IS NOT NULL THEN
                RETURN QUERY SELECT * FROM rankloop_task(v_assignment);
                RETURN;
            END IF;
        END IF;
    END IF;

    -- The ordinary walk of ix_comparison_sets_handout; sets found full once locked are passed over.
    FOR attempt IN 1 .. p_attempts LOOP
        v_set := NULL;
        {_pick(skip_locked=True)}
        IF v_set IS NULL THEN
            -- What is left may be locked only for a moment by others' hand-outs or submissions: wait
            -- for the best such set rather than answer that nothing is left.
            {_pick(skip_locked=False)}
        END IF;
        IF v_set IS NULL THEN
            RETURN;
        END IF;
        -- The locking SELECT may have read a snapshot older than the lock: count again, in new statements.
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
            IF v_assignment IS NOT NULL THEN
                RETURN QUERY SELECT * FROM rankloop_task(v_assignment);
                RETURN;
            END IF;
        END IF;
        v_exclude := v_exclude || v_set;
    END LOOP;
    RETURN;
END $$
"""  # noqa: S608 (constant fragments of this file, no input)

# A submission's locks, in the one lock order (set row, then assignment row), with the project's flag types
# and the clock read once both are held; no row when the assignment is not this annotator's or its set is no
# longer of one of their projects.
_LOCK_SUBMISSION = """
CREATE FUNCTION rankloop_lock_submission(p_assignment integer, p_annotator integer)
RETURNS TABLE (
    set_id integer, overlap integer, set_status varchar, flag_types varchar[],
    id integer, annotator_id integer, status varchar, display_order integer[],
    leased_at timestamptz, lease_expires_at timestamptz, completed_at timestamptz, clock timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_set integer;
    v_overlap integer;
    v_set_status varchar;
    v_flags varchar[];
    a assignments%ROWTYPE;
BEGIN
    SELECT s.id, s.overlap, s.status, j.flag_types INTO v_set, v_overlap, v_set_status, v_flags
    FROM comparison_sets s JOIN projects j ON j.id = s.project_id
    WHERE s.id = (SELECT x.set_id FROM assignments x WHERE x.id = p_assignment AND x.annotator_id = p_annotator)
      AND s.project_id = ANY (ARRAY(
          SELECT pr.id FROM projects pr
          WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p_annotator AND u.role = 'admin')
             OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = pr.id AND m.user_id = p_annotator)))
    FOR NO KEY UPDATE OF s;
    IF v_set IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO a FROM assignments x WHERE x.id = p_assignment FOR UPDATE;
    IF a.id IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_set, v_overlap, v_set_status, v_flags, a.id, a.annotator_id, a.status,
        a.display_order, a.leased_at, a.lease_expires_at, a.completed_at, clock_timestamp();
END $$
"""

_FUNCTIONS = (
    "rankloop_lock_submission(integer, integer)",
    "rankloop_next_task(integer, integer, double precision, double precision, integer, integer, integer, integer)",
    "rankloop_task(integer)",
    "rankloop_lease(integer, integer, integer[], timestamptz, integer)",
)


def upgrade() -> None:
    for statement in (_LEASE, _TASK, _NEXT_TASK, _LOCK_SUBMISSION):
        op.execute(statement)


def downgrade() -> None:
    for signature in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {signature}")
