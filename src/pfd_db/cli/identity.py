"""User and API-key commands: ``pfd-db user ...`` and ``pfd-db apikey ...``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Column, Table
from sqlalchemy.orm import Session

from pfd_db.cli.common import UrlOption, console, transaction
from pfd_db.errors import NotFound
from pfd_db.models import Role, User
from pfd_db.passwords import generate_password
from pfd_db.store import api_keys as keys_store
from pfd_db.store import users as users_store
from pfd_db.types import utcnow

users = typer.Typer(help="Create, list and manage users.", no_args_is_help=True)
api_keys = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)

GenerateOption = Annotated[
    bool,
    typer.Option(
        "--generate-password", help="Generate a strong password and show it once instead of asking."
    ),
]


def find_user(session: Session, username: str) -> User:
    user = users_store.get_by_username(session, username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def ask_password(generate: bool) -> str | None:
    """A password typed twice at a hidden prompt, or None to have one generated."""
    if generate:
        return None
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def show_once(title: str, secret: str) -> None:
    console.print(Panel(secret, title=title, subtitle="shown once: store it now", expand=False))


@users.command("create")
def create_user(
    username: str,
    email: Annotated[str, typer.Option("--email", help="The user's e-mail address.")],
    role: Annotated[Role, typer.Option("--role", help="Role of the new user.")] = Role.VIEWER,
    generate: GenerateOption = False,
    url: UrlOption = None,
) -> None:
    """Create a user (the password is asked for, or generated and shown once)."""
    password = ask_password(generate) or generate_password()
    with transaction(url) as session:
        users_store.create_user(session, username, email, password, role=role)
    if generate:
        show_once(f"password of {username}", password)
    console.print(f"created user {username!r} ({role.value})")


@users.command("list")
def list_users(url: UrlOption = None) -> None:
    """List every user with role, status and 2FA."""
    with transaction(url) as session:
        table = Table("username", "email", "role", "active", "2FA", "locked until", "created")
        for user in users_store.list_users(session):
            table.add_row(
                user.username,
                user.email,
                user.role.value,
                "yes" if user.is_active else "no",
                "on" if user.totp_enabled else "off",
                user.locked_until.isoformat(timespec="minutes") if user.locked_until else "",
                user.created_at.date().isoformat(),
            )
    console.print(table)


@users.command("set-role")
def set_role(username: str, role: Role, url: UrlOption = None) -> None:
    """Give USERNAME the role ROLE."""
    with transaction(url) as session:
        users_store.set_role(session, find_user(session, username), role)
    console.print(f"{username!r} is now {role.value}")


@users.command("deactivate")
def deactivate(username: str, url: UrlOption = None) -> None:
    """Deactivate USERNAME and end all their sessions."""
    with transaction(url) as session:
        users_store.deactivate(session, find_user(session, username))
    console.print(f"{username!r} deactivated")


@users.command("reset-password")
def reset_password(username: str, generate: GenerateOption = False, url: UrlOption = None) -> None:
    """Set a new password for USERNAME (asked for, or generated and shown once)."""
    password = ask_password(generate)
    with transaction(url) as session:
        new = users_store.reset_password(session, find_user(session, username), password)
    if password is None:
        show_once(f"new password of {username}", new)
    console.print(f"password of {username!r} reset")


@api_keys.command("create")
def create_key(
    username: str,
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. 'ci'.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="read, write or admin; repeatable.")
    ] = None,
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="Days until it expires.")
    ] = None,
    rate_limit: Annotated[int, typer.Option("--rate-limit", min=1, help="Requests/hour.")] = 1000,
    url: UrlOption = None,
) -> None:
    """Issue an API key for USERNAME; the key is shown once."""
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None
    with transaction(url) as session:
        plaintext, key = keys_store.issue(
            session,
            find_user(session, username),
            name,
            scopes=tuple(scope or ("read",)),
            expires_at=expires_at,
            rate_limit=rate_limit,
        )
        show_once(
            f"API key {key.name!r} of {username} (scopes: {', '.join(key.scopes)})", plaintext
        )


@api_keys.command("list")
def list_keys(
    username: Annotated[str | None, typer.Argument(help="Only this user's keys.")] = None,
    url: UrlOption = None,
) -> None:
    """List API keys (never their secrets)."""
    with transaction(url) as session:
        owners = [find_user(session, username)] if username else users_store.list_users(session)
        table = Table(
            "id",
            Column("prefix", no_wrap=True, min_width=16),
            "user",
            "name",
            "scopes",
            "active",
            "expires",
            "last used",
        )
        for owner in owners:
            for key in keys_store.list_keys(session, owner):
                table.add_row(
                    str(key.id),
                    key.prefix,
                    owner.username,
                    key.name,
                    ",".join(key.scopes),
                    "yes" if key.is_active and key.revoked_at is None else "no",
                    key.expires_at.date().isoformat() if key.expires_at else "never",
                    key.last_used_at.isoformat(timespec="minutes") if key.last_used_at else "",
                )
    console.print(table)


@api_keys.command("revoke")
def revoke_key(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")], url: UrlOption = None
) -> None:
    """Revoke an API key by id or prefix."""
    with transaction(url) as session:
        found = keys_store.get_key(session, int(key) if key.isdigit() else key)
        keys_store.revoke(session, found)
        console.print(f"revoked key {found.id} ({found.name!r}, pfd_{found.prefix}_…)")


__all__ = ["api_keys", "users"]
