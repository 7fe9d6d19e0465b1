"""Explanations (SHAP, LIME, Grad-CAM, ...) cached per experiment, signal and method."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pfd_db.models import Experiment, Explanation
from pfd_db.store.validation import require_object, require_text


def find_explanation(
    session: Session, experiment: Experiment, signal_id: str, method: str
) -> Explanation | None:
    """The cached explanation of ``signal_id`` by ``method`` for ``experiment``, if any."""
    return session.scalars(
        select(Explanation)
        .where(
            Explanation.experiment_id == experiment.id,
            Explanation.signal_id == signal_id,
            Explanation.method == method,
        )
        .order_by(Explanation.id)
        .limit(1)
    ).first()


def get_or_compute(
    session: Session,
    experiment: Experiment,
    signal_id: str,
    method: str,
    compute: Callable[[], Mapping[str, Any]],
    file_path: str | None = None,
) -> tuple[Explanation, bool]:
    """The cached explanation, or a new one from ``compute()``; the flag says whether
    it was computed now. ``compute`` runs only on a cache miss."""
    signal_id = require_text(signal_id, "signal_id", 100)
    method = require_text(method, "method", 50)
    cached = find_explanation(session, experiment, signal_id, method)
    if cached is not None:
        return cached, False
    explanation = Explanation(
        experiment_id=experiment.id,
        signal_id=signal_id,
        method=method,
        explanation_data=require_object(compute(), "explanation data"),
        file_path=file_path,
    )
    session.add(explanation)
    session.flush()
    return explanation, True
