"""The tables. Times are stored in UTC, except a session's first start, which is local wall-clock
time in the session's time zone: a recurring 14:00 must stay 14:00 across the clock change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class CareHome(Base):
    __tablename__ = "care_homes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class School(Base):
    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Device(Base):
    """A box. It belongs to exactly one care home or one school; its token is stored hashed."""

    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint(
            "(care_home_id IS NULL) <> (school_id IS NULL)", name="ck_devices_one_owner"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    care_home_id: Mapped[int | None] = mapped_column(ForeignKey("care_homes.id"), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    care_home: Mapped[CareHome | None] = relationship(lazy="joined")
    school: Mapped[School | None] = relationship(lazy="joined")


class AccessCode(Base):
    """A school's sign-in code for the school page; stored hashed, revocable."""

    __tablename__ = "access_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    school: Mapped[School] = relationship(lazy="joined")


class Pairing(Base):
    """A care home and a school that make music together."""

    __tablename__ = "pairings"
    __table_args__ = (UniqueConstraint("care_home_id", "school_id", name="uq_pairings_parties"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care_home_id: Mapped[int] = mapped_column(ForeignKey("care_homes.id"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    care_home: Mapped[CareHome] = relationship(lazy="joined")
    school: Mapped[School] = relationship(lazy="joined")


class Session(Base):
    """A one-off or recurring meeting of a pairing.

    ``starts_local`` is the first start as wall-clock time in ``timezone`` (ISO, no offset);
    ``rrule`` (RFC 5545, without DTSTART) repeats it, e.g. ``FREQ=WEEKLY;BYDAY=TU``.
    """

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pairing_id: Mapped[int] = mapped_column(ForeignKey("pairings.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    starts_local: Mapped[str] = mapped_column(String(19))
    timezone: Mapped[str] = mapped_column(String(64))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    rrule: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    pairing: Mapped[Pairing] = relationship(lazy="joined")
    cancellations: Mapped[list[Cancellation]] = relationship(
        lazy="selectin", order_by="Cancellation.occurrence_starts_at"
    )


class Cancellation(Base):
    """One occurrence of a session that will not happen."""

    __tablename__ = "cancellations"
    __table_args__ = (
        UniqueConstraint("session_id", "occurrence_starts_at", name="uq_cancellations_occurrence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    occurrence_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Append-only (database triggers refuse UPDATE and DELETE). Never content, never secrets."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    room: Mapped[str | None] = mapped_column(String(64), index=True)
    remote: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
