"""Where a webhook may post: ``http``/``https`` URLs of public hosts.

A webhook URL names a host the *server* calls, so an internal one would let a
user reach what only the server can (a cloud metadata service, a database, an
admin page). Refused unless ``PFD_DB_WEBHOOK_ALLOWED_HOSTS`` allows it:

- addresses that are not public: loopback, private, link-local (with the
  metadata service 169.254.169.254), shared (100.64/10), multicast, reserved,
  unspecified; also when written as IPv4-mapped, 6to4, Teredo or NAT64 IPv6,
  or as IPv4 in integer, hex, octal or short form (``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``, ``127.1``), as browsers and curl read them;
- names that are internal by definition: ``localhost`` and ``*.localhost``,
  ``*.internal`` (``metadata.google.internal``), ``*.local``,
  ``*.localdomain``, ``*.home.arpa``, ``metadata``, ``instance-data``.

A name is compared without its trailing dot and after IDNA mapping (full-width
digits are digits). Other names are not looked up when a webhook is saved (the
answer can change): a worker calls :func:`resolve_target` before each send,
which refuses the URL if any address the name resolves to is internal, and
sends to one of the addresses it returns (not to a second lookup's).

``PFD_DB_WEBHOOK_ALLOWED_HOSTS``: comma-separated host names (matched exactly;
every address they resolve to is allowed) and networks (CIDR; a single address
is a network of one) that are allowed although internal.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

from pfd_db.config import get_settings
from pfd_db.errors import HostUnresolved, InvalidInput
from pfd_db.store.validation import require_text

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
URL_MAX = 2048
SCHEMES = {"http": 80, "https": 443}  # scheme: its default port
REFUSED_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")  # a backslash is a slash to browsers
LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")
INTERNAL_NAMES = frozenset({"localhost", "metadata", "instance-data"})
INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
SETTING = "PFD_DB_WEBHOOK_ALLOWED_HOSTS"
USAGE = "url must be an http:// or https:// address like https://example.com/hook"


@dataclass(frozen=True)
class Allowed:
    """What ``PFD_DB_WEBHOOK_ALLOWED_HOSTS`` lets through although internal."""

    names: frozenset[str]
    networks: tuple[Network, ...]

    def admits(self, address: Address) -> bool:
        """Whether ``address`` lies in one of the allowed networks."""
        return any(
            address in network for network in self.networks if network.version == address.version
        )


def check_url(value: object) -> str:
    """``value`` if it is an ``http``/``https`` URL whose host may be called: not an
    internal address or name (see the module's rules), unless allowed. The host is
    not looked up. :class:`InvalidInput` naming the URL (without its user and
    password) and what is wrong with it."""
    url = require_text(value, "url", URL_MAX)
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or REFUSED_CHARACTERS.search(url):
        raise InvalidInput(f"{USAGE} (got {_shown(url)})")
    host = _host(url, parts)
    _port(url, parts)
    allowed = _allowed()
    if host in allowed.names:
        return url
    literal = _literal(url, host)
    if literal is not None:
        _require_public(url, literal, allowed)
    elif host in INTERNAL_NAMES or host.endswith(INTERNAL_SUFFIXES):
        raise InvalidInput(
            f"url {_shown(url)}: {host} is an internal host name; webhooks post to "
            f"public hosts only ({SETTING} allows named internal hosts)"
        )
    return url


def resolve_target(url: str) -> list[str]:
    """The addresses a worker may send ``url``'s request to, resolved now: every
    address the host resolves to, each checked. Connect to one of these (a second
    lookup could answer differently). :class:`InvalidInput` naming the URL if it is
    not acceptable (:func:`check_url`) or if any address the host resolves to is
    internal and not allowed; :class:`HostUnresolved` if the name does not resolve."""
    url = check_url(url)
    parts = urlsplit(url)
    host = _host(url, parts)
    port = _port(url, parts)
    literal = _literal(url, host)
    lookup = host if literal is None else str(literal)
    try:
        found = socket.getaddrinfo(lookup, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostUnresolved(f"url {_shown(url)}: {host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        raise HostUnresolved(f"url {_shown(url)}: {host} resolves to no address")
    allowed = _allowed()
    if host not in allowed.names:
        for address in addresses:
            _require_public(url, ipaddress.ip_address(address), allowed, resolved=host)
    return addresses


def is_internal(address: Address | str) -> bool:
    """Whether ``address`` (an address or its text) is not a public address, or
    embeds one that is not (IPv4-mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, str):
        text = address
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidInput(f"address: {text[:60]!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise InvalidInput(f"address must be an IP address (got {type(address).__name__})")
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded(address):
            if is_internal(embedded):
                return True
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
    )


def _allowed() -> Allowed:
    return _parse_allowed(get_settings().webhook_allowed_hosts)


@lru_cache(maxsize=8)
def _parse_allowed(setting: str) -> Allowed:
    names: set[str] = set()
    networks: list[Network] = []
    for entry in filter(None, setting.split(",")):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return Allowed(frozenset(names), tuple(networks))


def _host(url: str, parts: SplitResult) -> str:
    """The host of ``url``, lowercase, IDNA-mapped, without a trailing dot."""
    host = parts.hostname or ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InvalidInput(f"url {_shown(url)}: the host is not a valid name") from None
    host = host.removesuffix(".")
    if not host:
        raise InvalidInput(f"{USAGE} (got {_shown(url)})")
    if ":" not in host and not all(LABEL.fullmatch(label) for label in host.split(".")):
        raise InvalidInput(f"url {_shown(url)}: {host!r} is not a valid host name")
    return host


def _port(url: str, parts: SplitResult) -> int:
    try:
        return parts.port or SCHEMES[parts.scheme.lower()]
    except ValueError as exc:
        raise InvalidInput(f"url {_shown(url)}: {exc}") from None


def _literal(url: str, host: str) -> Address | None:
    """The address ``host`` spells, in any of its spellings, or None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidInput(f"url {_shown(url)}: {host!r} is not a valid address") from None
    labels = host.split(".")
    if not all(NUMBER.fullmatch(label) for label in labels):
        return None
    try:
        numbers = [_number(label) for label in labels]
    except ValueError:
        raise InvalidInput(f"url {_shown(url)}: {host!r} is not a valid address") from None
    *head, last = numbers
    if len(numbers) > 4 or any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise InvalidInput(f"url {_shown(url)}: {host!r} is not a valid IPv4 address")
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last
    return ipaddress.IPv4Address(value)


def _number(label: str) -> int:
    """One part of an IPv4 address as URL parsers read it: 0x hex, 0 octal, decimal."""
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return [embedded for embedded in found if embedded is not None]


def _require_public(url: str, address: Address, allowed: Allowed, resolved: str = "") -> None:
    embedded = _embedded(address) if isinstance(address, ipaddress.IPv6Address) else []
    if not is_internal(address) or allowed.admits(address) or any(map(allowed.admits, embedded)):
        return
    where = f"{resolved} resolves to {address}" if resolved else f"{address}"
    raise InvalidInput(
        f"url {_shown(url)}: {where}, an internal address (loopback, private, link-local, "
        f"metadata or reserved); webhooks post to public hosts only ({SETTING} allows "
        "internal hosts or networks)"
    )


def _shown(url: str) -> str:
    """``url`` as an error message may show it: without a user name or password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return repr(url[:200])
    netloc = parts.netloc.rpartition("@")[2]
    return repr(parts._replace(netloc=f"***@{netloc}").geturl()[:200])
