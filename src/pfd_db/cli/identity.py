"""User and API-key commands: ``pfd-db user ...`` and ``pfd-db apikey ...``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pfd_db.cli.database import READ, WRITE, database, transaction
from pfd_db.cli.options import JsonOption, QuietOption, UrlOption
from pfd_db.cli.output import console, print_json, say, show_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pfd_db.models import APIKey, Role, User

users = typer.Typer(help="Create, list and manage users.", no_args_is_help=True)
api_keys = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)

ROLES_HELP = "viewer, operator, admin or super_admin"
EXPIRES_DAYS_MAX = 36_500  # a hundred years
RATE_LIMIT_MAX = 2**31 - 1  # the column's range on PostgreSQL


def role_names() -> list[str]:
    """The roles, for shell completion."""
    from pfd_db.models import Role

    return [role.value for role in Role]


def as_role(value: str) -> Role:
    """``value`` as a Role, or InvalidInput naming the roles."""
    from pfd_db.models import Role
    from pfd_db.store.validation import require_member

    return require_member(value, Role, "role")


GenerateOption = Annotated[
    bool,
    typer.Option(
        "--generate-password", help="Generate a strong password and show it once instead of asking."
    ),
]
RoleArgument = Annotated[
    str, typer.Argument(help=f"One of {ROLES_HELP}.", autocompletion=role_names)
]


def find_user(session: Session, username: str) -> User:
    from pfd_db.errors import NotFound
    from pfd_db.store.identity import users as users_store

    user = users_store.get_by_username(session, username)
    if user is None:
        raise NotFound(f"no user named {username!r}: see pfd-db user list")
    return user


def ask_password(generate: bool) -> str | None:
    """A password typed twice at a hidden prompt, or None to have one generated."""
    if generate:
        return None
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def usable_for_writing(url: str | None) -> None:
    """Refuse now, before asking anything, a database the command could not write."""
    with database(url, WRITE):
        pass


@users.command("create")
def create_user(
    username: str,
    email: Annotated[str, typer.Option("--email", help="The user's e-mail address.")],
    role: Annotated[
        str, typer.Option("--role", help=f"One of {ROLES_HELP}.", autocompletion=role_names)
    ] = "viewer",
    generate: GenerateOption = False,
    quiet: QuietOption = False,
    url: UrlOption = None,
) -> None:
    """Create a user (the password is asked for, or generated and shown once)."""
    from pfd_db.passwords import generate_password
    from pfd_db.store.identity import users as users_store

    chosen = as_role(role)
    usable_for_writing(url)
    password = ask_password(generate) or generate_password()
    with transaction(url) as session:
        users_store.create_user(session, username, email, password, role=chosen)
    if generate:
        show_secret(f"password of {username}", password, quiet=quiet)
    say(f"created user {username!r} ({chosen.value})", quiet=quiet)


@users.command("list")
def list_users(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List every user with role, status and 2FA. Reads only."""
    from pfd_db.store.identity import users as users_store

    with transaction(url, READ) as session:
        rows = [user_json(user) for user in users_store.list_users(session)]
    if as_json:
        print_json({"users": rows})
        return
    from rich.table import Table

    table = Table("username", "email", "role", "active", "2FA", "locked until", "created")
    for row in rows:
        locked = row["locked_until"]
        table.add_row(
            row["username"],
            row["email"],
            row["role"],
            "yes" if row["active"] else "no",
            "on" if row["two_factor"] else "off",
            locked.isoformat(timespec="minutes") if locked else "",
            row["created_at"].date().isoformat(),
        )
    console.print(table)


def user_json(user: User) -> dict[str, Any]:
    """A user as ``user list --json`` shows it (never a secret)."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role.value,
        "active": user.is_active,
        "two_factor": user.totp_enabled,
        "locked_until": user.locked_until,
        "created_at": user.created_at,
    }


@users.command("set-role")
def set_role(username: str, role: RoleArgument, url: UrlOption = None) -> None:
    """Give USERNAME the role ROLE."""
    from pfd_db.store.identity import users as users_store

    chosen = as_role(role)
    with transaction(url) as session:
        users_store.set_role(session, find_user(session, username), chosen)
    say(f"{username!r} is now {chosen.value}")


@users.command("deactivate")
def deactivate(username: str, url: UrlOption = None) -> None:
    """Deactivate USERNAME and end all their sessions."""
    from pfd_db.store.identity import users as users_store

    with transaction(url) as session:
        users_store.deactivate(session, find_user(session, username))
    say(f"{username!r} deactivated")


@users.command("reset-password")
def reset_password(
    username: str, generate: GenerateOption = False, quiet: QuietOption = False,
    url: UrlOption = None,
) -> None:  # fmt: skip
    """Set a new password for USERNAME (asked for, or generated and shown once)."""
    from pfd_db.store.identity import users as users_store

    with transaction(url) as session:
        find_user(session, username)  # refused now rather than after the prompt
    password = ask_password(generate)
    with transaction(url) as session:
        new = users_store.reset_password(session, find_user(session, username), password)
    if password is None:
        show_secret(f"new password of {username}", new, quiet=quiet)
    say(f"password of {username!r} reset", quiet=quiet)


@api_keys.command("create")
def create_key(
    username: str,
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. 'ci'.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="read, write or admin; repeatable.")
    ] = None,
    expires_days: Annotated[
        int | None,
        typer.Option("--expires-days", min=1, max=EXPIRES_DAYS_MAX, help="Days until it expires."),
    ] = None,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", min=1, max=RATE_LIMIT_MAX, help="Requests per hour.")
    ] = 1000,
    quiet: QuietOption = False,
    url: UrlOption = None,
) -> None:
    """Issue an API key for USERNAME; the key is printed once, on a line of its own."""
    from datetime import timedelta

    from pfd_db.store.identity import api_keys as keys_store
    from pfd_db.types import utcnow

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
        label = f"API key {key.name!r} of {username} (scopes: {', '.join(key.scopes)})"
    show_secret(label, plaintext, quiet=quiet)


@api_keys.command("list")
def list_keys(
    username: Annotated[str | None, typer.Argument(help="Only this user's keys.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys (never their secrets). Reads only."""
    from pfd_db.store.identity import api_keys as keys_store
    from pfd_db.store.identity import users as users_store

    with transaction(url, READ) as session:
        owners = [find_user(session, username)] if username else users_store.list_users(session)
        rows = [
            key_json(key, owner) for owner in owners for key in keys_store.list_keys(session, owner)
        ]
    if as_json:
        print_json({"api_keys": rows})
        return
    from rich.table import Table

    table = Table("id", "prefix", "user", "name", "scopes", "active", "expires", "last used")
    for row in rows:
        expires, used = row["expires_at"], row["last_used_at"]
        table.add_row(
            str(row["id"]),
            row["prefix"],
            row["user"],
            row["name"],
            ",".join(row["scopes"]),
            "yes" if row["active"] else "no",
            expires.date().isoformat() if expires else "never",
            used.isoformat(timespec="minutes") if used else "",
        )
    console.print(table)


def key_json(key: APIKey, owner: User) -> dict[str, Any]:
    """An API key as ``apikey list --json`` shows it (never the secret or its hash)."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "user": owner.username,
        "name": key.name,
        "scopes": list(key.scopes),
        "active": key.is_active and key.revoked_at is None,
        "rate_limit": key.rate_limit,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@api_keys.command("revoke")
def revoke_key(
    key: Annotated[
        str,
        typer.Argument(help="The key's id, the whole key, or at least 8 characters of its prefix."),
    ],
    url: UrlOption = None,
) -> None:
    """Revoke an API key; says so when it was already revoked."""
    from pfd_db.store.identity import api_keys as keys_store

    with transaction(url) as session:
        found = keys_store.get_key(session, key)
        described = f"key {found.id} ({found.name!r}, pfd_{found.prefix}_…)"
        if found.revoked_at is not None:
            say(f"{described} was already revoked on {found.revoked_at:%Y-%m-%d %H:%M} UTC")
            return
        keys_store.revoke(session, found)
    say(f"revoked {described}")


__all__ = ["api_keys", "users"]
