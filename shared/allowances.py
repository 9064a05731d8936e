"""Once-per-window allowances: at most one out-of-session reply per sender per interval, and
the like. The first message to claim a window holds it; the same message claiming again (a
redelivered task) still holds it, so that carrying a decision out twice sends the same reply."""

from __future__ import annotations

import redis

from shared.keys import Keys

# KEYS: the allowance. ARGV: the holder, the window in seconds. 1 when `holder` holds it.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


class Allowances:
    """Named windows, each used by one holder; takes its Redis client in."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._claim = client.register_script(_CLAIM)

    def holder(self, name: str) -> str | None:
        """Who holds the window now, if anyone."""
        found = self._redis.get(self._keys.allowance(name))
        return str(found) if found is not None else None

    def claim(self, name: str, holder: str, seconds: int) -> bool:
        """Take the window for `holder` (True), or find it held by another (False)."""
        return bool(self._claim(keys=[self._keys.allowance(name)], args=[holder, seconds]))


def out_of_session(sender: str) -> str:
    """The allowance of out-of-session replies to one sender."""
    return f"oos:{sender}"
