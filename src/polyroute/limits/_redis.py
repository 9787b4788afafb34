"""The sliding window log in Redis, shared by every replica (``[storage] redis_url``).

Per scope three keys: ``rl:<scope>:log`` (a sorted set: hold id by admission time, ms),
``rl:<scope>:tok`` (a hash: hold id -> tokens held) and ``rl:<scope>:sum`` (their total).
One Lua script admits (ages out the old entries, checks every scope, adds to all or
none) and one settles, each a single EVALSHA, atomic in Redis; time is Redis's own
(``TIME``), so replicas with skewed clocks agree. Keys of idle scopes expire after two
windows. The scopes of one call are in different hash slots: a single Redis server (or
primary with replicas), not Redis Cluster.

Redis unreachable: :meth:`RedisWindows.admit` answers :data:`UNREACHABLE` and the
limiter uses this process's windows; a settlement that cannot be sent leaves its hold at
the worst case until it ages out (60 s): late, never over the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from polyroute.limits._window import WINDOW_S, Rate, Refused

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from polyroute.shared import Shared

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, window, hold, need = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  local log, tok, sum = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  if #old > 0 then
    local freed = 0
    for _, h in ipairs(old) do  -- one by one: unpack() of thousands overflows Lua's stack
      freed = freed + tonumber(redis.call('HGET', tok, h) or 0)
      redis.call('HDEL', tok, h)
    end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    redis.call('DECRBY', sum, freed)
  end
  local count = redis.call('ZCARD', log)
  if rpm > 0 and count >= rpm then
    local oldest = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
    return {0, i, 'rpm', tonumber(oldest[2]) + window - now}
  end
  if tpm > 0 then
    if need > tpm then return {0, i, 'tpm', -1} end
    local excess = tonumber(redis.call('GET', sum) or 0) + need - tpm
    if excess > 0 then
      local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
      local freed = 0
      for j = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', tok, entries[j]) or 0)
        if freed >= excess then return {0, i, 'tpm', tonumber(entries[j + 1]) + window - now} end
      end
      return {0, i, 'tpm', window}
    end
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i - 2], now, hold)
  redis.call('HSET', KEYS[3 * i - 1], hold, need)
  redis.call('INCRBY', KEYS[3 * i], need)
  for k = 3 * i - 2, 3 * i do redis.call('PEXPIRE', KEYS[k], 2 * window) end
end
return {1}
"""

_SETTLE = """
local n, hold, tokens = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 1, n do
  local log, tok, sum = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local held = redis.call('HGET', tok, hold)
  if held then
    if tokens < 0 then
      redis.call('ZREM', log, hold)
      redis.call('HDEL', tok, hold)
      redis.call('DECRBY', sum, tonumber(held))
    else
      redis.call('HSET', tok, hold, tokens)
      redis.call('INCRBY', sum, tokens - tonumber(held))
    end
  end
end
return 1
"""


class Unreachable:
    """Redis did not answer: use this process's windows for this call."""


UNREACHABLE: Final = Unreachable()


class RedisWindows:
    """Every scope's window in Redis, through the process's :class:`~polyroute.shared.Shared`."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._admit: Any = None
        self._settle: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def usable(self) -> bool:
        return self.shared.up

    def _keys(self, scopes: Sequence[str]) -> list[str]:
        key = self.shared.key
        return [key("rl", s, part) for s in scopes for part in ("log", "tok", "sum")]

    def _scripts(self, client: aioredis.Redis) -> tuple[Any, Any]:
        if self._admit is None:  # EVALSHA, loaded on first use (and again after a restart)
            self._admit = client.register_script(_ADMIT)
            self._settle = client.register_script(_SETTLE)
        return self._admit, self._settle

    async def admit(
        self, scopes: Sequence[tuple[str, Rate]], tokens: int, hold: str
    ) -> Refused | Unreachable | None:
        keys = self._keys([s for s, _ in scopes])
        args: list[int | str] = [len(scopes), int(WINDOW_S * 1000), hold, tokens]
        for _, rate in scopes:
            args += [rate.rpm, rate.tpm]

        async def run(client: aioredis.Redis) -> Any:
            return await self._scripts(client)[0](keys=keys, args=args, client=client)

        answer = await self.shared.call(run)
        if answer is None:
            return UNREACHABLE
        if int(answer[0]) == 1:
            return None
        scope, rate = scopes[int(answer[1]) - 1]
        limit, wait_ms = str(answer[2]), int(answer[3])
        per_minute = rate.rpm if limit == "rpm" else rate.tpm
        return Refused(scope, limit, per_minute, tokens, None if wait_ms < 0 else wait_ms / 1000)

    def settle(self, scopes: Sequence[str], hold: str, tokens: int | None) -> None:
        """Sent in the background (the meter settles from synchronous code)."""
        keys = self._keys(scopes)
        args = [len(scopes), hold, -1 if tokens is None else tokens]

        async def run(client: aioredis.Redis) -> Any:
            return await self._scripts(client)[1](keys=keys, args=args, client=client)

        try:
            task = asyncio.get_running_loop().create_task(self.shared.call(run))
        except RuntimeError:  # no loop (shutting down): the hold ages out instead
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Let settlements in flight reach Redis (each is bounded by the client's timeout)."""
        if self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)
