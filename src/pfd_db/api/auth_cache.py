"""Verified API keys, remembered for a few seconds.

Keyed by the SHA-256 of the presented key, never the key itself. Bounded
(least recently used first out) and short-lived: a key revoked, expired or
deactivated is refused at once anyway, because every request's rate-limit
write (:func:`pfd_db.store.identity.rate_limits.consume`) checks that the key is
still usable and evicts it here when not; a changed role or scope is seen
within ``ttl`` seconds. Safe to use from the event loop and from worker threads.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from pfd_db.api.access import Caller

DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000


def digest_of(key: str) -> str:
    """The cache's name for ``key``: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class AuthCache:
    """A bounded map from key digest to :class:`Caller`, each entry living ``ttl`` seconds."""

    def __init__(
        self, ttl: float = DEFAULT_TTL_SECONDS, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> Caller | None:
        """The caller verified for ``digest`` within the last ``ttl`` seconds, or None."""
        with self._lock:
            found = self._entries.get(digest)
            if found is None:
                return None
            if found[1] <= time.monotonic():
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return found[0]

    def put(self, digest: str, caller: Caller) -> None:
        """Remember ``caller`` for ``digest``; the oldest entry goes when full."""
        with self._lock:
            self._entries[digest] = (caller, time.monotonic() + self.ttl)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def evict(self, digest: str) -> None:
        """Forget ``digest`` (its key was found unusable)."""
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
