"""System: the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from pfd_db.models.base import Base, Timestamps, one_of
from pfd_db.models.enums import LogStatus
from pfd_db.types import BigID, JSONDoc


class SystemLog(Timestamps, Base):
    __tablename__ = "system_logs"
    __table_args__ = (
        Index("idx_system_log_time_status", "created_at", "status"),
        Index("idx_system_log_user_time", "user_id", "created_at"),
        Index("idx_system_log_action_time", "action", "created_at"),  # revision 0006
        one_of("status", [s.value for s in LogStatus], name="status"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True, sort_order=-1)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(50), index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    error_message: Mapped[str | None] = mapped_column(String(1000))
