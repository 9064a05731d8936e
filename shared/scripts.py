"""Lua scripts queued in a redis-py pipeline without the round trip redis-py adds before it.

redis-py 8.1 runs `Pipeline.load_scripts` before executing any pipeline that holds a `Script`
called with `client=pipe`: a `SCRIPT EXISTS` round trip (and a `SCRIPT LOAD` when one is
missing) before the pipeline's own. It has to: an `EVALSHA` that finds no script fails alone,
inside `MULTI` too, while the transaction's other commands run. `EVAL` with the script's text
cannot miss: Redis hashes the text and runs the compilation it has cached, so the pipeline stays
one round trip and a transaction stays whole, for a few hundred bytes more on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import Script


def queue_script(pipe: Any, script: Script, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue `script` on `pipe` (a pipeline, in MULTI or not) as EVAL of its text."""
    pipe.eval(script.script, len(keys), *keys, *args)
