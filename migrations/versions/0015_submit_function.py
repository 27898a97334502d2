"""a ranking's submission as one server-side function: locks, checks against the task, store, in one call

`rankloop_submit_ranking` takes what app/annotation/service.submit_ranking did in two statements (the locks
of rankloop_lock_submission, then the ranking with its assignment's "submitted" and the set's closing) and
the checks between them that need the locked task (the ranked candidates are exactly those shown, the
flags name shown candidates and only the project's flag types, the lease is live, the set open). The
client's submission arrives normalised (the checks that need no task are the caller's), with its
fingerprint.

It answers one row for the two outcomes of a good submission: `created` (the ranking stored now) and an
identical repeat (the stored ranking, `created` false). Anything else (not the caller's assignment, a
check failed, a different answer to a ranked task, a skipped or expired task, a closed set) answers no row
and writes nothing: the caller then runs its statement-by-statement path, whose checks name the problem
(the locks are already held, so nothing can change in between). Each statement takes a fresh snapshot
under READ COMMITTED, so the count that closes a full set, made after the set's lock was granted, sees
every submission committed before it, as the separate statements did.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBMIT = """
CREATE FUNCTION rankloop_submit_ranking(
    p_assignment integer, p_annotator integer, p_tiers jsonb, p_ids integer[], p_all_bad boolean,
    p_flags jsonb, p_named integer[], p_flag_values text[], p_rationale text, p_seconds double precision,
    p_source varchar, p_fingerprint varchar
) RETURNS TABLE (
    created boolean, set_closed boolean,
    id integer, assignment_id integer, set_id integer, annotator_id integer, tiers jsonb, all_bad boolean,
    flags jsonb, rationale text, display_order integer[], seconds_spent double precision,
    server_seconds double precision, source varchar, fingerprint varchar, dropped boolean,
    created_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    l record;
    r rankings%ROWTYPE;
    v_closed boolean;
BEGIN
    -- The set's lock, then the assignment's, and the clock once both are held (the one lock order).
    SELECT * INTO l FROM rankloop_lock_submission(p_assignment, p_annotator);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The checks that need the task: exactly the candidates shown, each once (the caller checked that no
    -- id is repeated); flags on shown candidates, of the project's types.
    IF (ARRAY(SELECT c FROM unnest(p_ids) AS c ORDER BY c)
            = ARRAY(SELECT c FROM unnest(l.display_order) AS c ORDER BY c)
        AND p_named <@ l.display_order
        AND p_flag_values <@ l.flag_types::text[]) IS NOT TRUE THEN
        RETURN;
    END IF;
    IF l.status = 'submitted' THEN
        SELECT * INTO r FROM rankings x WHERE x.assignment_id = p_assignment;
        IF FOUND AND r.fingerprint = p_fingerprint THEN
            RETURN QUERY SELECT false, false, r.id, r.assignment_id, r.set_id, r.annotator_id, r.tiers,
                r.all_bad, r.flags, r.rationale, r.display_order, r.seconds_spent, r.server_seconds,
                r.source, r.fingerprint, r.dropped, r.created_at;
        END IF;
        RETURN;
    END IF;
    IF l.status <> 'leased' OR l.lease_expires_at <= l.clock OR l.set_status <> 'open' THEN
        RETURN;
    END IF;
    INSERT INTO rankings AS x (
        assignment_id, set_id, annotator_id, tiers, all_bad, flags, rationale, display_order,
        seconds_spent, server_seconds, source, fingerprint, dropped)
    VALUES (
        p_assignment, l.set_id, p_annotator, p_tiers, p_all_bad, p_flags, p_rationale, l.display_order,
        -- What the server measured: lease handed out -> now (the client's figure is only its claim).
        p_seconds, greatest(0, extract(epoch FROM l.clock - l.leased_at))::double precision, p_source,
        p_fingerprint, false)
    RETURNING x.* INTO r;
    UPDATE assignments x SET status = 'submitted', completed_at = l.clock WHERE x.id = p_assignment;
    -- Close the set once full (a gold set stays open for every annotator); the count, a new statement
    -- after the lock and the update above, includes this submission.
    UPDATE comparison_sets s SET status = 'closed'
    WHERE s.id = l.set_id AND s.status = 'open' AND s.gold_tiers IS NULL
      AND (SELECT count(*) FROM assignments x WHERE x.set_id = l.set_id AND x.status = 'submitted')
          >= s.overlap;
    v_closed := FOUND;
    RETURN QUERY SELECT true, v_closed, r.id, r.assignment_id, r.set_id, r.annotator_id, r.tiers,
        r.all_bad, r.flags, r.rationale, r.display_order, r.seconds_spent, r.server_seconds,
        r.source, r.fingerprint, r.dropped, r.created_at;
END $$
"""

_SIGNATURE = (
    "rankloop_submit_ranking(integer, integer, jsonb, integer[], boolean, jsonb, integer[], text[], text,"
    " double precision, varchar, varchar)"
)


def upgrade() -> None:
    op.execute(_SUBMIT)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
