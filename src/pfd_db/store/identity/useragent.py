"""Device type and browser from a User-Agent header: a small, documented heuristic.

Not a full parser: it answers "what kind of device, which browser family" for a
sessions list, and stays correct for the agents people actually use. Rules are
tried in order and the first match wins, because agents claim each other's
names (Edge says "Chrome" and "Safari", Chrome says "Safari", almost everyone
says "Mozilla").

Device type, first match of:

- ``Bot``: crawlers and scripted clients (``bot``, ``crawl``, ``spider``,
  ``HeadlessChrome``, curl, Wget, python-requests, httpx, Go, Java, Postman...);
- ``Tablet``: ``iPad``, ``Tablet``, Kindle/Silk, or Android without ``Mobile``;
- ``Mobile``: ``Mobi`` (covers ``Mobile``), iPhone, iPod, Windows Phone,
  BlackBerry, Opera Mini;
- ``Desktop``: everything else.

Browser: the family name from :data:`BROWSERS` (no version; the big crawlers
first, since they pose as Chrome), ``Other`` when none matches. An empty or
missing agent gives ``(None, None)``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pfd_db.store.validation import require_str

BOT = re.compile(
    r"bot\b|crawl|spider|slurp|facebookexternalhit|headless|curl/|wget/|python-|httpx|"
    r"aiohttp|go-http-client|java/|okhttp|postman|libwww|scrapy",
    re.IGNORECASE,
)
TABLET = re.compile(r"ipad|tablet|kindle|silk/|playbook|android(?!.*mobile)", re.IGNORECASE)
MOBILE = re.compile(r"mobi|iphone|ipod|windows phone|blackberry|opera mini", re.IGNORECASE)

BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("Googlebot", r"\bGooglebot\b"),
        ("Bingbot", r"\bbingbot\b"),
        ("Edge", r"\bEdg(e|A|iOS)?/"),
        ("Opera", r"\bOPR/|\bOpera\b"),
        ("Samsung Internet", r"\bSamsungBrowser/"),
        ("Firefox", r"\bFirefox/|\bFxiOS/"),
        ("Chrome", r"\b(Headless)?Chrome/|\bCriOS/|\bChromium/"),
        ("Safari", r"\bVersion/.*\bSafari/"),
        ("Internet Explorer", r"\bMSIE |\bTrident/"),
        ("curl", r"^curl/"),
        ("Wget", r"^Wget/"),
        ("python-requests", r"^python-requests/"),
        ("httpx", r"^python-httpx/"),
    )
)


class UserAgent(NamedTuple):
    """What a User-Agent says about the client."""

    device_type: str | None
    browser: str | None


def parse(user_agent: str | None) -> UserAgent:
    """The device type and browser family of ``user_agent`` (see the module doc);
    :class:`~pfd_db.errors.InvalidInput` if it is neither a string nor None."""
    if user_agent is None or not require_str(user_agent, "user_agent").strip():
        return UserAgent(None, None)
    return UserAgent(device_type(user_agent), browser(user_agent))


def device_type(user_agent: str) -> str:
    """``Bot``, ``Tablet``, ``Mobile`` or ``Desktop``."""
    require_str(user_agent, "user_agent")
    for name, pattern in (("Bot", BOT), ("Tablet", TABLET), ("Mobile", MOBILE)):
        if pattern.search(user_agent):
            return name
    return "Desktop"


def browser(user_agent: str) -> str:
    """The browser (or client) family, ``Other`` when unknown."""
    agent = require_str(user_agent, "user_agent").strip()
    return next((name for name, pattern in BROWSERS if pattern.search(agent)), "Other")
