"""What every request and response model shares: the strict base and the problem document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    """Base of every request and response model: unknown fields, NaN and
    Infinity are refused; models are built from ORM objects' attributes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, from_attributes=True)


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str | None = Field(default=None, description="What went wrong in this request.")
    field: str | None = Field(default=None, description="The request field that was refused.")


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, unknown, expired or revoked API key",
    403: "The key's scope or its owner's role does not allow this",
    404: "Not found",
    409: "Conflict with what is stored",
    413: "Request body over the limit",
    422: "Invalid input (the problem names the field)",
    429: "Rate limit reached (see Retry-After)",
    503: "Database unavailable (see Retry-After)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for ``statuses``, each a :class:`Problem`."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }


# The errors any authenticated route may answer with; add 404/409 per route.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = problem_responses(401, 403, 413, 422, 429, 503)
