"""The declarative base, its naming convention and the timestamp mixins."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, MetaData, func, inspect
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from pfd_db.types import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model: integer ``id`` primary key, ``to_dict()``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}

    __secret_columns__: ClassVar[frozenset[str]] = frozenset()
    """Columns that hold secrets (hashes, ciphertext): never in ``to_dict()``."""

    __repr_attrs__: ClassVar[tuple[str, ...]] = ()
    """Attributes ``repr()`` shows after the id (never secrets)."""

    id: Mapped[int] = mapped_column(primary_key=True, sort_order=-1)

    def to_dict(self) -> dict[str, Any]:
        """The row's column values, JSON-ready (ISO 8601 times, enum values),
        secrets and deferred full-text documents left out."""
        mapper = inspect(type(self))
        return {
            attr.key: _jsonable(getattr(self, attr.key))
            for attr in mapper.column_attrs
            if attr.key not in self.__secret_columns__ and not attr.deferred
        }

    def __repr__(self) -> str:
        """``<Model id=… attr=…>`` from what is loaded: it never queries the database,
        so it works on new, expired and detached objects alike (None or left out)."""
        state = inspect(self)
        loaded = state.dict
        ident = state.identity[0] if state.identity else loaded.get("id")
        shown = [
            f"{name}={_jsonable(loaded[name])!r}" for name in self.__repr_attrs__ if name in loaded
        ]
        return f"<{' '.join([type(self).__name__, f'id={ident}', *shown])}>"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


class Timestamps:
    """``created_at`` and ``updated_at``, set by the database and by the ORM."""

    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now(), nullable=False, sort_order=1
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime,
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
        nullable=False,
        sort_order=1,
    )


class IndexedTimestamps(Timestamps):
    """:class:`Timestamps` with ``created_at`` indexed, for tables listed by age."""

    @declared_attr
    def created_at(cls) -> Mapped[datetime]:
        return mapped_column(
            UTCDateTime,
            default=utcnow,
            server_default=func.now(),
            nullable=False,
            index=True,
            sort_order=1,
        )


def enum_column(enum: type[Enum], name: str) -> SAEnum:
    """A string column holding ``enum``'s lowercase values, guarded by a CHECK."""
    return SAEnum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
        length=max(20, *(len(m.value) for m in enum)),
    )


def one_of(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    """A CHECK that ``column`` holds one of ``values`` (NULL passes, as in SQL)."""
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)
