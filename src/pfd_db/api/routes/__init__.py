"""The API's routes: each module defines ``router`` (an ``APIRouter``); ROUTERS lists them."""

from __future__ import annotations

from fastapi import APIRouter

from pfd_db.api.routes import (
    account,
    account_security,
    account_webhooks,
    admin,
    admin_traffic,
    campaigns,
    curves,
    datasets,
    experiments,
    health,
    jobs,
    metrics,
)

ROUTERS: list[APIRouter] = [
    health.router,
    experiments.router,
    curves.router,
    datasets.router,
    campaigns.router,
    jobs.router,
    account.router,
    account_security.router,
    account_webhooks.router,
    admin.router,
    admin_traffic.router,
    metrics.router,
]
