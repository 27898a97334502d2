"""projects: separate annotation efforts with their own prompt sets, settings, members and model lines

Every existing prompt set, model version and round moves into a new "default" project, and every existing
user becomes one of its members, so nothing changes for a server with one effort. Comparison sets carry
their prompt set's project (copied by the triggers that already copy the hand-out priorities), so the
hand-out filters by membership during its index walk. Rows written without a project (older clients, the
demo, psql) join the default project, created on demand by rankloop_default_project().

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = ("prompt_sets", "model_versions", "rounds")

FUNCTIONS = """
CREATE FUNCTION rankloop_default_project() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    pid integer;
BEGIN
    SELECT id INTO pid FROM projects WHERE is_default;
    IF pid IS NULL THEN
        INSERT INTO projects (name, is_default) VALUES ('default', true) ON CONFLICT DO NOTHING
        RETURNING id INTO pid;
        IF pid IS NULL THEN  -- created by a concurrent transaction meanwhile
            SELECT id INTO pid FROM projects WHERE is_default;
        END IF;
    END IF;
    RETURN pid;
END $$;

CREATE FUNCTION fill_default_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.project_id IS NULL THEN
        NEW.project_id := rankloop_default_project();
    END IF;
    RETURN NEW;
END $$;
"""

COPY_WITH_PROJECT = """
CREATE OR REPLACE FUNCTION comparison_sets_copy_priorities() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT ps.priority, p.priority, ps.project_id
    INTO NEW.prompt_set_priority, NEW.prompt_priority, NEW.project_id
    FROM prompts p JOIN prompt_sets ps ON ps.id = p.prompt_set_id
    WHERE p.id = NEW.prompt_id;
    IF TG_OP = 'INSERT' THEN
        NEW.submitted_count := 0;  -- a new set has no assignments yet
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION prompts_push_priority() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE comparison_sets cs
    SET prompt_priority = NEW.priority, prompt_set_priority = ps.priority, project_id = ps.project_id
    FROM prompt_sets ps
    WHERE cs.prompt_id = NEW.id AND ps.id = NEW.prompt_set_id;
    RETURN NULL;
END $$;

CREATE FUNCTION prompt_sets_push_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE comparison_sets cs
    SET project_id = NEW.project_id
    FROM prompts p
    WHERE p.id = cs.prompt_id AND p.prompt_set_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER prompt_sets_push_project
AFTER UPDATE OF project_id ON prompt_sets
FOR EACH ROW WHEN (OLD.project_id IS DISTINCT FROM NEW.project_id)
EXECUTE FUNCTION prompt_sets_push_project();
"""

COPY_WITHOUT_PROJECT = """
DROP TRIGGER prompt_sets_push_project ON prompt_sets;
DROP FUNCTION prompt_sets_push_project();

CREATE OR REPLACE FUNCTION comparison_sets_copy_priorities() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT ps.priority, p.priority INTO NEW.prompt_set_priority, NEW.prompt_priority
    FROM prompts p JOIN prompt_sets ps ON ps.id = p.prompt_set_id
    WHERE p.id = NEW.prompt_id;
    IF TG_OP = 'INSERT' THEN
        NEW.submitted_count := 0;  -- a new set has no assignments yet
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION prompts_push_priority() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE comparison_sets
    SET prompt_priority = NEW.priority,
        prompt_set_priority = (SELECT priority FROM prompt_sets WHERE id = NEW.prompt_set_id)
    WHERE prompt_id = NEW.id;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("guidelines", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "flag_types",
            postgresql.ARRAY(sa.String(length=40)),
            server_default="{unsafe,incorrect}",
            nullable=False,
        ),
        sa.Column("k_min", sa.Integer(), nullable=True),
        sa.Column("k_max", sa.Integer(), nullable=True),
        sa.Column("overlap", sa.Integer(), nullable=True),
        sa.Column("lease_minutes", sa.Integer(), nullable=True),
        sa.Column("base_model", sa.String(length=500), nullable=True),
        sa.Column(
            "round_defaults", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("schedule_min_rankings", sa.Integer(), nullable=True),
        sa.Column("schedule_cron", sa.String(length=100), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("k_min IS NULL OR k_min >= 2", name=op.f("ck_projects_k_min_at_least_2")),
        sa.CheckConstraint("k_max IS NULL OR k_max <= 9", name=op.f("ck_projects_k_max_at_most_9")),
        sa.CheckConstraint(
            "k_min IS NULL OR k_max IS NULL OR k_min <= k_max", name=op.f("ck_projects_k_range_ordered")
        ),
        sa.CheckConstraint("overlap IS NULL OR overlap >= 1", name=op.f("ck_projects_overlap_positive")),
        sa.CheckConstraint(
            "lease_minutes IS NULL OR lease_minutes >= 1", name=op.f("ck_projects_lease_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_index(
        "uq_projects_default", "projects", ["is_default"], unique=True, postgresql_where=sa.text("is_default")
    )
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_project_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_members")),
    )
    op.create_index(op.f("ix_project_members_user_id"), "project_members", ["user_id"], unique=False)
    op.execute(FUNCTIONS)

    # Everything so far belongs to the default project; every user is one of its members.
    for table in (*OWNED, "comparison_sets"):
        op.add_column(table, sa.Column("project_id", sa.Integer(), nullable=True))
    op.execute("SELECT rankloop_default_project()")
    for table in OWNED:
        op.execute(f"UPDATE {table} SET project_id = rankloop_default_project()")  # noqa: S608 (our names)
    op.execute(
        "UPDATE comparison_sets cs SET project_id = ps.project_id"
        " FROM prompts p JOIN prompt_sets ps ON ps.id = p.prompt_set_id WHERE p.id = cs.prompt_id"
    )
    op.execute(
        "INSERT INTO project_members (project_id, user_id) SELECT rankloop_default_project(), id FROM users"
    )
    for table in (*OWNED, "comparison_sets"):
        op.alter_column(table, "project_id", nullable=False)
        op.create_foreign_key(
            op.f(f"fk_{table}_project_id_projects"), table, "projects", ["project_id"], ["id"]
        )
        op.create_index(op.f(f"ix_{table}_project_id"), table, ["project_id"], unique=False)
    for table in OWNED:
        op.execute(
            f"CREATE TRIGGER {table}_fill_default_project BEFORE INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION fill_default_project()"
        )
    op.execute(COPY_WITH_PROJECT)


def downgrade() -> None:
    op.execute(COPY_WITHOUT_PROJECT)
    for table in OWNED:
        op.execute(f"DROP TRIGGER {table}_fill_default_project ON {table}")
    for table in (*OWNED, "comparison_sets"):
        op.drop_index(op.f(f"ix_{table}_project_id"), table_name=table)
        op.drop_constraint(op.f(f"fk_{table}_project_id_projects"), table, type_="foreignkey")
        op.drop_column(table, "project_id")
    op.execute("DROP FUNCTION fill_default_project()")
    op.execute("DROP FUNCTION rankloop_default_project()")
    op.drop_index(op.f("ix_project_members_user_id"), table_name="project_members")
    op.drop_table("project_members")
    op.drop_index("uq_projects_default", table_name="projects", postgresql_where=sa.text("is_default"))
    op.drop_table("projects")
