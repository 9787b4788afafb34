"""``Shared``: the one connection a process has to what its replicas share.

With ``[storage] redis_url`` set, it is a redis-py asyncio client plus one
pub/sub listener; without, a local stand-in: messages reach this process's own
handlers and nothing else. Components never open Redis themselves: they take a
``Shared``, run their commands through :meth:`Shared.call` (which never raises
for an unreachable server) and publish through :meth:`Shared.publish`.

Redis down: :meth:`Shared.call` answers ``None`` at once, the caller goes on
with its own state, the log says so once and :attr:`Shared.up` turns false;
the listener retries every ``reconnect_s`` and, when the server answers again,
the ``on_connect`` observers resynchronise (messages sent meanwhile are lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # redis-py takes about as long to import as the rest: only with a URL
    import redis.asyncio as aioredis

log = logging.getLogger("polyroute.shared")

T = TypeVar("T")
Handler = Callable[[dict[str, Any]], None]

SCHEMES = ("redis", "rediss", "unix")
"""The URL schemes of ``[storage] redis_url``."""
PREFIX = "polyroute"


CLOSE_S = 5.0
"""How long :meth:`Shared.aclose` waits for its tasks to stop."""


def _stop_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if this task was asked to stop: a client library
    may turn a cancellation into its own error or a quiet return, and a loop that takes it
    for an outage would run on and never let its closer finish."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Shared:
    """Redis for every replica (``url`` set), or this process alone (``url`` empty)."""

    def __init__(
        self,
        url: str = "",
        *,
        prefix: str = PREFIX,
        timeout_s: float = 2.0,
        reconnect_s: float = 0.5,
    ) -> None:
        """``timeout_s``: each command's and connection's bound (a dead server is noticed
        within it); ``reconnect_s``: how often a down connection is tried again."""
        self.url = url
        self.prefix = prefix
        self.reconnect_s = reconnect_s
        self.replica = uuid.uuid4().hex[:12]
        """This process's id in messages (its own are not delivered back to it)."""
        self._redis: aioredis.Redis | None = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        """What an unreachable server raises."""
        self._refusals: tuple[type[BaseException], ...] = ()
        """What a server that answers raises for a command it refuses."""
        if url:
            import redis.asyncio as aioredis
            from redis import exceptions

            self._errors = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
            self._refusals = (exceptions.RedisError,)
            self._redis = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry_on_timeout=False,
                decode_responses=True,
            )
        self._up = True
        self._handlers: dict[str, list[Handler]] = {}
        self._on_connect: list[Callable[[], Awaitable[None]]] = []
        self._periodic: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        self._listener: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def enabled(self) -> bool:
        """Whether replicas share state (``redis_url`` set)."""
        return self._redis is not None

    @property
    def redis(self) -> aioredis.Redis | None:
        """The client (``decode_responses``: strings), ``None`` without ``redis_url``. Prefer
        :meth:`call`: it turns an unreachable server into local fallback."""
        return self._redis

    @property
    def up(self) -> bool:
        """Whether Redis answered last time (always true without it)."""
        return self._up

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return ":".join((self.prefix, *parts))

    # -- commands ------------------------------------------------------------

    async def call(self, command: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """``command(client)``'s result; ``None`` without Redis, or when it is unreachable
        (then known down, and not tried again until the listener reconnects)."""
        client = self._redis
        if client is None or (not self._up and self.listening):
            return None
        try:
            return await command(client)
        except self._errors as exc:
            self._down(exc)
            return None
        except self._refusals as exc:  # a server that answers: not a reason to stop sharing
            log.warning("shared state: Redis refused a command (%s: %s)", type(exc).__name__, exc)
            return None

    def spawn(self, command: Callable[[aioredis.Redis], Awaitable[Any]]) -> bool:
        """:meth:`call` in the background (from synchronous code on the event loop: a
        breaker's report); whether it was sent off (not without Redis, while it is down,
        or with no running loop)."""
        if self._redis is None or not self._up:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        task = loop.create_task(self.call(command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    # -- messages ------------------------------------------------------------

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(message)`` for each message other replicas publish on ``channel``
        (locally: this process's own); returns the unsubscribe function."""
        self._handlers.setdefault(channel, []).append(handler)
        return lambda: self._handlers[channel].remove(handler)

    def on_connect(self, resync: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Run ``resync()`` each time the listener connects: at start, and when Redis answers
        again after being down (messages sent meanwhile were lost). Returns the remover."""
        self._on_connect.append(resync)
        return lambda: self._on_connect.remove(resync)

    def every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job()`` every ``interval_s`` while started (with Redis only)."""
        self._periodic.append((interval_s, job))

    async def publish(self, channel: str, message: Mapping[str, Any]) -> bool:
        """Send ``message`` (JSON-able) to every replica; whether it went out (false: Redis
        down). Locally it goes to this process's handlers."""
        if self._redis is None:
            self._deliver(channel, dict(message))
            return True
        body = json.dumps({**message, "origin": self.replica})
        sent = await self.call(lambda r: r.publish(self.key("ch", channel), body))
        return sent is not None

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(channel, ())):
            handler(message)

    # -- life ----------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.done()

    async def start(self) -> None:
        """Listen for other replicas' messages (and reconnect after an outage) on the running
        loop; a no-op without Redis or when started."""
        if self._redis is None or self.listening:
            return
        ready = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(ready), name="polyroute-shared")
        await ready  # subscribed, or found down: messages published from now on are heard
        self._loops = [
            asyncio.create_task(self._every(interval_s, job), name="polyroute-shared-sync")
            for interval_s, job in self._periodic
        ]

    async def aclose(self) -> None:
        """Stop listening and close the connections. Never hangs on Redis: what has not
        stopped within :data:`CLOSE_S` of its cancellation (a connection's teardown that
        never ends) is left behind, with a warning."""
        tasks = [*self._loops, *([self._listener] if self._listener is not None else [])]
        self._listener, self._loops = None, []
        tasks += self._tasks
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_S)
            if pending:
                log.warning(
                    "shared state: %d Redis task(s) did not stop within %gs of closing; "
                    "left behind",
                    len(pending),
                    CLOSE_S,
                )
        if self._redis is not None:
            await self._redis.aclose()

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        assert self._redis is not None
        pattern = self.key("ch", "*")
        skip = len(self.key("ch", ""))
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(pattern)
                await self._connected()
                if not ready.done():
                    ready.set_result(None)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    _stop_if_cancelled()
                    if msg is not None:
                        self._heard(msg["channel"][skip:], msg["data"])
                    if not self._up:  # a command failed while this connection held
                        await self._redis.ping()
                        await self._connected()
            except self._errors as exc:
                _stop_if_cancelled()
                self._down(exc)
                if not ready.done():
                    ready.set_result(None)
            finally:
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()
            _stop_if_cancelled()
            await asyncio.sleep(self.reconnect_s)

    async def _connected(self) -> None:
        if not self._up:
            log.warning("shared state: Redis answers again; replicas share state")
        self._up = True
        for resync in list(self._on_connect):
            await resync()

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await job()
            _stop_if_cancelled()

    def _heard(self, channel: str, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("shared state: a message on %r is not JSON; ignored", channel)
            return
        if not isinstance(message, dict) or message.get("origin") == self.replica:
            return
        self._deliver(channel, message)

    def _down(self, exc: BaseException) -> None:
        if self._up:
            self._up = False
            log.warning(
                "shared state: Redis unreachable (%s: %s); each replica goes on with its own "
                "state until it answers again",
                type(exc).__name__,
                exc,
            )

    def __repr__(self) -> str:
        where = "local" if self._redis is None else ("up" if self._up else "down")
        return f"Shared({where})"
