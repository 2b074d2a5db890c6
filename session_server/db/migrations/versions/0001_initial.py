"""The first schema: organisations, devices, access codes, pairings, sessions, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from session_server.db.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created() -> sa.Column[object]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "care_homes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        _created(),
    )
    op.create_table(
        "schools",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        _created(),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("care_home_id", sa.Integer(), sa.ForeignKey("care_homes.id"), index=True),
        sa.Column("school_id", sa.Integer(), sa.ForeignKey("schools.id"), index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _created(),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("last_seen_at", UTCDateTime()),
        sa.CheckConstraint(
            "(care_home_id IS NULL) <> (school_id IS NULL)", name="ck_devices_one_owner"
        ),
    )
    op.create_table(
        "access_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "school_id", sa.Integer(), sa.ForeignKey("schools.id"), nullable=False, index=True
        ),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        _created(),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_table(
        "pairings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "care_home_id",
            sa.Integer(),
            sa.ForeignKey("care_homes.id"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "school_id", sa.Integer(), sa.ForeignKey("schools.id"), nullable=False, index=True
        ),
        _created(),
        sa.UniqueConstraint("care_home_id", "school_id", name="uq_pairings_parties"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "pairing_id", sa.Integer(), sa.ForeignKey("pairings.id"), nullable=False, index=True
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("starts_local", sa.String(19), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("rrule", sa.String(500)),
        _created(),
    )
    op.create_table(
        "cancellations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "session_id", sa.Integer(), sa.ForeignKey("sessions.id"), nullable=False, index=True
        ),
        sa.Column("occurrence_starts_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        _created(),
        sa.UniqueConstraint(
            "session_id", "occurrence_starts_at", name="uq_cancellations_occurrence"
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("event", sa.String(64), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("room", sa.String(64), index=True),
        sa.Column("remote", sa.String(100)),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    _make_audit_log_append_only()


def _make_audit_log_append_only() -> None:
    """The audit log is evidence: the database itself refuses to change or delete a row."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{action.lower()} BEFORE {action} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    for table in (
        "audit_log",
        "cancellations",
        "sessions",
        "pairings",
        "access_codes",
        "devices",
        "schools",
        "care_homes",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
