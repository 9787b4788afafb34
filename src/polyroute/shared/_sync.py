"""Breakers, health marks and learned latency shared by the replicas (through Redis).

Nothing here is on a request's path: a breaker's report leaves as a background
command (a Lua script: the cluster's count of failures, its state, and the
message to every replica, in one atomic step), health verdicts only when they
change, and latency samples in a batch every ``interval_s``. Each replica keeps
deciding from its own in-process state, which other replicas' messages update.

Keys (``<prefix>:``): ``breaker:<provider>`` (hash: state, failures, opened_at ms),
``probe:<provider>`` (the half-open probe's holder, ``SET NX PX``), ``health``
(hash: provider -> latest verdict, JSON), ``latency:<provider>:<model>`` (hash:
the cluster's means, expiring when forgotten).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from polyroute.router.breaker import Breakers, CircuitBreaker
from polyroute.router.health import HealthMonitor, HealthStatus
from polyroute.router.stats import LatencyStats
from polyroute.shared._shared import Shared

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

log = logging.getLogger("polyroute.shared")

BREAKER_CHANNEL = "breaker"
HEALTH_CHANNEL = "health"
DAY_MS = 86_400_000

# The breaker's state in Redis, as CircuitBreaker keeps it in process: "open" turns
# half-open once reset_ms have passed (TIME: the server's clock, one for the cluster).
_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reset = tonumber(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if state == 'open' and now - opened >= reset then state = 'half_open' end
"""

# A counted failure (ARGV: reset_ms, threshold, provider, origin, channel).
_FAILED = (
    _STATE
    + """
if state == 'open' then return 0 end
failures = failures + 1
local msg = {provider = ARGV[3], origin = ARGV[4], failures = failures}
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'failures', failures)
  redis.call('DEL', KEYS[2])
  msg.state = 'open'
  msg.retry_in_ms = reset
else
  redis.call('HSET', KEYS[1], 'failures', failures)
  msg.state = 'closed'
end
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('PUBLISH', ARGV[5], cjson.encode(msg))
return failures
"""
)

# A success that ends a run of failures or a half-open spell (ARGV: reset_ms, provider,
# origin, channel).
_SUCCEEDED = (
    _STATE
    + """
if state == 'open' or (state == 'closed' and failures == 0) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'opened_at', 0)
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], cjson.encode(
  {provider = ARGV[2], origin = ARGV[3], state = 'closed', failures = 0}))
return 1
"""
)

# The cluster's view: {state (open, half_open, closed), failures, retry_in_ms}.
_READ = (
    _STATE
    + """
local retry = 0
if state == 'open' then retry = opened + reset - now end
return {state, failures, retry}
"""
)

# A replica that opened a breaker while Redis was down tells the cluster (ARGV: reset_ms,
# retry_in_ms, failures, provider, origin, channel); an open cluster breaker wins.
_OPENED = (
    _STATE
    + """
if state ~= 'closed' then return 0 end
local retry = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now - (reset - retry),
  'failures', ARGV[3])
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('PUBLISH', ARGV[6], cjson.encode({provider = ARGV[4], origin = ARGV[5],
  state = 'open', failures = tonumber(ARGV[3]), retry_in_ms = retry}))
return 1
"""
)

# A batch of one replica's samples of a pair into the cluster's means, weighted as
# LatencyStats weighs them (ARGV: n, mean latency, ttft n, mean ttft, alpha, half-life ms);
# returns {latency, ttft or '', samples, weight}, or {} when the pair has no data.
_MERGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, lat, tn, ttft = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local alpha, hl = tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'lat', 'ttft', 'samples', 'weight', 'at')
local weight = tonumber(h[4] or '0')
local kept = 0
if weight > 0 then kept = 2 ^ (-(now - tonumber(h[5])) / hl) end
weight = weight * kept
if n == 0 then
  if h[1] == false or weight < 0.5 then return {} end
  return {h[1], h[2] or '', h[3], tostring(weight)}
end
local function mix(old, mean, k)
  if old == false or old == '' or weight == 0 then return mean end
  local a = 1 - (1 - alpha) ^ k * kept
  return tonumber(old) + a * (mean - tonumber(old))
end
local new_lat = mix(h[1], lat, n)
local new_ttft = h[2] or ''
if tn > 0 then new_ttft = tostring(mix(h[2], ttft, tn)) end
local samples = tonumber(h[3] or '0') + n
weight = math.min(weight + n, 1 / alpha)
redis.call('HSET', KEYS[1], 'lat', tostring(new_lat), 'ttft', new_ttft,
  'samples', samples, 'weight', tostring(weight), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(hl * math.log(weight / 0.5) / math.log(2)) + 1)
return {tostring(new_lat), new_ttft, tostring(samples), tostring(weight)}
"""


async def _eval(script: str, keys: list[str], args: tuple[Any, ...], r: aioredis.Redis) -> Any:
    return await r.eval(script, len(keys), *keys, *args)


class SharedBreakers:
    """The :class:`~polyroute.router.breaker.BreakerLink` of one process's breakers."""

    def __init__(self, shared: Shared, breakers: Breakers) -> None:
        self.shared = shared
        self.breakers = breakers
        self.reset_ms = int(breakers.config.reset_timeout_s * 1000)
        self.threshold = breakers.config.failure_threshold
        self._channel = shared.key("ch", BREAKER_CHANNEL)
        # per provider: (epoch, "asking" | "held" | the clock time to ask again after)
        self._probe: dict[str, tuple[int, str | float]] = {}
        breakers.link(self)
        shared.subscribe(BREAKER_CHANNEL, self._heard)
        shared.on_connect(self.resync)

    def _keys(self, provider: str) -> list[str]:
        return [self.shared.key("breaker", provider), self.shared.key("probe", provider)]

    def failed(self, breaker: CircuitBreaker) -> None:
        args = (self.reset_ms, self.threshold, breaker.provider, self.shared.replica, self._channel)
        self.shared.spawn(partial(_eval, _FAILED, self._keys(breaker.provider), args))

    def succeeded(self, breaker: CircuitBreaker) -> None:
        args = (self.reset_ms, breaker.provider, self.shared.replica, self._channel)
        self.shared.spawn(partial(_eval, _SUCCEEDED, self._keys(breaker.provider), args))

    def may_probe(self, breaker: CircuitBreaker) -> bool:
        """One probe for the cluster: the replica that takes ``probe:<provider>`` sends it;
        the others wait for its news (or, if it never reports, for the lock to lapse)."""
        if not self.shared.up:
            return True
        pid, epoch = breaker.provider, breaker.epoch
        held = self._probe.get(pid)
        if held is not None and held[0] == epoch:
            if held[1] == "held":
                return True
            if held[1] == "asking" or breaker.clock() < float(held[1]):
                return False
        key = self.shared.key("probe", pid)
        ttl_ms = self.reset_ms

        async def ask(r: aioredis.Redis) -> None:
            took = await r.set(key, self.shared.replica, nx=True, px=ttl_ms)
            if self._probe.get(pid) == (epoch, "asking"):
                after = breaker.clock() + ttl_ms / 1000
                self._probe[pid] = (epoch, "held" if took else after)

        if not self.shared.spawn(ask):
            return True
        self._probe[pid] = (epoch, "asking")
        return False

    def _heard(self, message: dict[str, Any]) -> None:
        try:
            pid = str(message["provider"])
            state = message["state"]
            failures = int(message["failures"])
            retry_in_s = float(message.get("retry_in_ms", 0)) / 1000
        except (KeyError, TypeError, ValueError):
            log.warning("shared state: a breaker message without its fields: %r", message)
            return
        if state not in ("open", "closed"):
            return
        self._probe.pop(pid, None)
        self.breakers.get(pid).adopt(state, failures, retry_in_s)

    async def resync(self) -> None:
        """Take the cluster's state of every breaker made here; one opened here while Redis
        was down is told to the cluster."""
        for b in self.breakers.made():
            keys = self._keys(b.provider)
            view = await self.shared.call(partial(_eval, _READ, keys, (self.reset_ms,)))
            if not view:
                continue
            state, failures, retry_ms = str(view[0]), int(view[1]), int(view[2])
            local = b.state
            if state == "closed" and local == "open":
                args = (self.reset_ms, int(b.retry_in_s * 1000), b.consecutive_failures)
                ident = (b.provider, self.shared.replica, self._channel)
                await self.shared.call(partial(_eval, _OPENED, keys, args + ident))
            elif state == "open" or (state == "half_open" and local == "closed"):
                b.adopt("open", failures, retry_ms / 1000)
            elif state == "closed":
                b.adopt("closed", failures, 0.0)


class SharedHealth:
    """Health verdicts that change go to every replica; the newer probe wins."""

    def __init__(self, shared: Shared, monitor: HealthMonitor) -> None:
        self.shared = shared
        self.monitor = monitor
        self._hash = shared.key("health")
        self._channel = shared.key("ch", HEALTH_CHANNEL)
        monitor.link = self
        shared.subscribe(HEALTH_CHANNEL, self._heard)
        shared.on_connect(self.resync)

    def changed(self, status: HealthStatus) -> None:
        body = json.dumps({**status.as_dict(), "origin": self.shared.replica})

        async def send(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as p:
                p.hset(self._hash, status.provider, body)
                p.publish(self._channel, body)
                await p.execute()

        self.shared.spawn(send)

    def _heard(self, message: dict[str, Any]) -> None:
        try:
            status = HealthStatus.from_dict(message)
        except (KeyError, TypeError, ValueError):
            log.warning("shared state: a health message without its fields: %r", message)
            return
        self.monitor.adopt(status)

    async def resync(self) -> None:
        """Every verdict the cluster kept, where newer than this process's."""
        marks = await self.shared.call(lambda r: r.hgetall(self._hash))
        for body in (marks or {}).values():
            try:
                self._heard(json.loads(body))
            except ValueError:
                continue


class SharedLatency:
    """Every ``interval_s``: this process's new samples into the cluster's means, and the
    cluster's means of every pair known here back (never on a request's path)."""

    def __init__(self, shared: Shared, stats: LatencyStats, interval_s: float = 1.0) -> None:
        self.shared = shared
        self.stats = stats
        stats.pending = {}
        self._script: AsyncScript | None = None  # EVALSHA: the script's text sent once
        shared.every(interval_s, self.sync)

    def _key(self, pair: tuple[str, str]) -> str:
        return self.shared.key("latency", *pair)

    async def sync(self) -> None:
        stats = self.stats
        sent, stats.pending = stats.pending or {}, {}
        pairs = stats.pairs()
        if not pairs:
            return
        hl_ms = stats.half_life_s * 1000
        means = await self.shared.call(lambda r: self._merge(r, pairs, sent, hl_ms))
        if means is None:  # down: the samples stay in this process's means only
            return
        for pair, row in zip(pairs, means, strict=True):
            if row:
                lat, ttft, samples, weight = row
                stats.adopt(
                    *pair, float(lat), float(ttft) if ttft else None, int(samples), float(weight)
                )

    async def _merge(
        self,
        r: aioredis.Redis,
        pairs: list[tuple[str, str]],
        sent: dict[tuple[str, str], list[float]],
        hl_ms: float,
    ) -> list[Any]:
        if self._script is None:
            self._script = r.register_script(_MERGE)
        async with r.pipeline(transaction=False) as p:
            for pair in pairs:
                n, lat, tn, ttft = sent.get(pair, (0.0, 0.0, 0.0, 0.0))
                args = (
                    int(n),
                    lat / n if n else 0,
                    int(tn),
                    ttft / tn if tn else 0,
                    self.stats.alpha,
                    hl_ms,
                )
                await self._script(keys=[self._key(pair)], args=args, client=p)
            return list(await p.execute())


def share(
    shared: Shared,
    breakers: Breakers,
    health: HealthMonitor,
    stats: LatencyStats,
    *,
    latency_interval_s: float = 1.0,
) -> Callable[[], None]:
    """Share one process's breakers, health marks and learned latency through ``shared``
    (a no-op without Redis); returns the function that stops sharing the breakers."""
    if not shared.enabled:
        return lambda: None
    SharedBreakers(shared, breakers)
    SharedHealth(shared, health)
    SharedLatency(shared, stats, latency_interval_s)
    return lambda: breakers.link(None)
