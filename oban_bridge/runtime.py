"""A running node: producers for the configured queues, the notifier, the peer, the plugins.

Behaves on the table and on the channels like an Elixir Oban node with the Basic engine: it only
ever fetches its own queues, wakes on `insert` notifications (Elixir's too), obeys `signal`
notifications addressed to any node or to this node under any instance name (see `addressed`), and
stamps `attempted_by` with `[node, producer uuid]`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import weakref
from collections.abc import Collection
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from . import jsonc, metrics
from .db import load_query, run_async
from .engine import queue_workers_plan
from .schema import has_limits_table_plan, limits_table_missing
from .executor import Outcome
from .isolation import Children
from .notifier import Notifier
from .peer import Peer
from .plugins.base import Plugin, Scope
from .plugins.gossip import Gossip
from .plugins.met import Met
from .plugins.lifeline import Lifeline
from .plugins.pruner import Pruner
from .plugins.settings import PluginSettings
from .plugins.stager import Stager
from .presence import Presence
from .producer import Producer
from .limits import QueueOptions, parse_queue_text, queue_options
from .threads import JobThreads
from .worker import lookup

log = logging.getLogger(__name__)

_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar("oban_bridge_runtime", default=None)


def current() -> Runtime:
    """The node running the current job (like `job.conf` in Elixir), for workers that need the
    database: inserting follow-up jobs, reading workflow state."""
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("not inside a job run by oban_bridge")
    return runtime


def parse_queues(spec: str | Mapping[str, Any]) -> dict[str, QueueOptions]:
    """`"badges:10,printing:2"`, `"api:local=10,global=20,rate=90/10s,partition=args.profile"` or
    `{"badges": 10, "api": {"local_limit": 10, "global_limit": 20}}` → options per queue (limits.py).

    In the text form a part holding `:` starts a queue; a `key=value` part without one adds an
    option to the queue before it."""
    items: list[tuple[Any, Any]]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError("no queues given: expected NAME:LIMIT[,NAME:LIMIT...], e.g. badges:10")
        groups: list[tuple[str, list[str]]] = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            head, colon, text = part.partition(":")
            if colon and "=" not in head:
                name, _, text = part.rpartition(":") if "=" not in text else (head, colon, text)
                if not name:
                    raise ValueError(f"queue {part!r}: expected NAME:LIMIT, e.g. badges:10")
                groups.append((name, [text]))
            elif "=" in part and groups and "=" in groups[-1][1][0]:
                groups[-1][1].append(part)
            else:
                raise ValueError(f"queue {part!r}: expected NAME:LIMIT or NAME:local=N,global=N,..., e.g. badges:10")
        items = []
        for name, options in groups:
            if len(options) == 1 and "=" not in options[0] and not options[0].isdigit():
                raise ValueError(f"queue {name!r}: the limit must be a positive integer, got {options[0]!r}")
            items.append((name, parse_queue_text(name, options)))
    queues: dict[str, QueueOptions] = {}
    for name, value in items:
        if not isinstance(name, str) or not 0 < len(name) < 128:
            raise ValueError(f"queue name {name!r}: expected 1 to 127 characters")
        if name in queues:
            raise ValueError(f"queue {name!r} is given twice")
        queues[name] = queue_options(name, value)
    return queues


# Connections the producers of a node share, whatever the number of queues: each cycle is one
# short statement, so a few connections keep many queues busy (see the README's connection budget).
PRODUCER_CONNECTIONS = 4
LANES = 2


def _configure(uuids: list[str]) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(jsonc.loads, conn)
        # Fetched timestamps arrive as timestamptz (ack_fetch_jobs.sql); in a UTC session psycopg
        # gives them datetime.timezone.utc, whatever the server's default time zone.
        await conn.execute("SET TIME ZONE 'UTC'")
        # Every connection that fetches also holds the producers' presence (presence.py): a job
        # is never fetched by a connection the orphan rescue could not see.
        await conn.execute(load_query("presence_keepalive"))
        for uuid in uuids:
            await conn.execute(load_query("producer_presence"), {"uuid": uuid})

    return configure


def default_plugins(scope: Scope = "own", *, settings: PluginSettings | None = None) -> list[Plugin]:
    """The plugins a node runs unless told otherwise: the stager, gossip and metrics Oban Web
    needs, and a pruner and lifeline with Elixir's defaults for ages and intervals, acting only on
    what this instance owns unless `scope="all"` (plugins/base.py). `settings` (what `start` reads
    from its options and `[tool.oban_bridge]`) overrides the scope, ages and limit, or turns the
    pruner or the time-based rescue off."""
    s = settings or PluginSettings(scope=scope)
    plugins: list[Plugin] = [Stager()]
    if s.prune_after is not None:
        plugins.append(Pruner(max_age=s.prune_after, limit=s.prune_limit, scope=s.scope))
    plugins += [Lifeline(rescue_after=s.rescue_after, orphan_grace=s.orphan_grace, scope=s.scope), Gossip(), Met()]
    return plugins


# What `inspect(conf.name)` gives for an Oban instance name (lib/oban/config.ex to_ident/1): an
# alias (`Oban`, `MyApp.Oban`) or an atom (`:jobs`, `:"my jobs"`). Oban Web and Elixir code address
# a node's queues as "<their instance name>.<node>"; a Python node answers whatever name they use,
# since it runs under a name of its own. The pattern keeps "Oban.web.host" (node "web.host") from
# reaching a node called "host".
_INSTANCE_NAME = re.compile(
    r'[A-Z]\w*(?:\.[A-Z]\w*)*'          # an alias: Oban, MyApp.Oban
    r'|:\w+[?!]?|:"(?:[^"\\]|\\.)*"'     # an atom: :jobs, :Jobs, :café, :"my jobs"
    r'|"(?:[^"\\]|\\.)*"')               # a string: "oban"


def addressed(ident: object, name: str, node: str, others: Collection[str] = ()) -> bool:
    """Whether a signal's `ident` reaches this node: "any", or "<instance name>.<node>" where the
    name is ours or one no other instance on this node answers to (`others`: names heard checking
    in from this node), so `--name A --node x` pauses instance A on x and not instance B."""
    if ident == "any" or ident is None:
        return True
    if not isinstance(ident, str) or not ident.endswith("." + node):
        return False
    head = ident[: -len(node) - 1]
    if head == name:
        return True
    return head not in others and _INSTANCE_NAME.fullmatch(head) is not None


# The nodes running in this process, for metrics.py's scrape-time gauges.
live: weakref.WeakSet[Runtime] = weakref.WeakSet()


class Runtime:
    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        name: str,
        node: str,
        queues: Mapping[str, Any],
        plugins: list[Plugin] | None = None,
        poll_interval: float = 1.0,
        peer_interval: float = 30.0,
        on_event: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.name = name
        self.node = node
        self.ident = f"{name}.{node}"
        limits = parse_queues(queues)
        self.threads = JobThreads()
        self.children = Children()
        self.pool: AsyncConnectionPool | None = None  # made in start(): pools belong to a loop
        # Two cycles in flight pay for themselves only when each queue can have its own two
        # connections: with more queues than that, one full-size cycle per queue does better
        # (bench/README.md: 4 queues x 25 at one lane each, 1 queue x 100 at two).
        lanes = max(1, min(LANES, PRODUCER_CONNECTIONS // max(1, len(limits))))
        self.producers = {
            queue: Producer(pool=None, prefix=prefix, queue=queue, limit=options.local_limit, node=node,
                            threads=self.threads, children=self.children, poll_interval=poll_interval,
                            on_outcome=self._on_outcome, lanes=lanes, options=options)
            for queue, options in limits.items()
        }
        self.presence = Presence(url, [p.uuid for p in self.producers.values()], busy=self.threads.busy)
        self.plugins = default_plugins() if plugins is None else plugins
        self.on_event = on_event
        self._met = [p for p in self.plugins if isinstance(p, Met)]
        self.notifier = Notifier(url, prefix)
        self.peer = Peer(url, prefix, name, node, interval=peer_interval)
        self.notifier.subscribe("insert", self._on_insert)
        self.notifier.subscribe("signal", self._on_signal)
        self.notifier.subscribe("leader", self.peer.on_leader_down)
        self.notifier.subscribe("gossip", self._on_gossip)
        for plugin in self.plugins:
            for chan, handler in plugin.listens().items():
                self.notifier.subscribe(chan, handler)
        self._instance_queues: dict[str, float] = {}  # queue -> when a node of this instance last ran it
        self._instance_producers: dict[str, float] = {}  # producer uuid of this instance -> last heard
        self._names_here: dict[str, float] = {}  # other instance names checking in from this node
        self._stopped: dict[str, Producer] = {}  # queues stopped by a signal, which a start revives
        self._started = False
        self._plugin_pool: AsyncConnectionPool | None = None
        self._stops: set[asyncio.Task[None]] = set()
        self._check_task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by hurry(): the shutdown grace ends now

    # Context for plugins
    def is_leader(self) -> bool:
        return self.peer.leader

    def instance_queues(self) -> set[str]:
        """The queues this instance's nodes run: this node's, and those its peers checked in with
        (gossip) in the last minute. What the pruner keeps to by default."""
        now = time.monotonic()
        self._instance_queues = {q: t for q, t in self._instance_queues.items() if now - t < 60}
        return set(self.producers) | set(self._instance_queues)

    def instance_producers(self) -> list[str]:
        """The producer uuids of this instance's nodes: this node's, and those heard in gossip in
        the last minute. What the lifeline's time-based rescue keeps to by default."""
        now = time.monotonic()
        self._instance_producers = {u: t for u, t in self._instance_producers.items() if now - t < 60}
        return sorted({p.uuid for p in self.producers.values()} | set(self._instance_producers))

    def listening(self) -> int:
        """How many times the notifier has connected so far, 0 while it is down: a plugin that
        must hear other nodes before it acts (met.py) starts over when this changes."""
        return self.notifier.connections if self.notifier.connected.is_set() else 0

    def _on_outcome(self, outcome: Outcome) -> None:
        if metrics._active is not None:
            metrics._active.observe(outcome)
        for met in self._met:
            met.record(outcome.event, outcome.job.queue, outcome.job.worker, outcome.duration, outcome.queue_time)
        if self.on_event is not None:
            self.on_event(outcome)

    def checks(self) -> list[dict[str, Any]]:
        return [p.check(self.name) for p in self.producers.values()]

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    def plugin_pool(self) -> AsyncConnectionPool:
        assert self._plugin_pool is not None, "the runtime is not started"
        return self._plugin_pool

    async def start(self) -> None:
        if self._started:
            return
        await self._check_limits_table()
        self._started = True
        live.add(self)  # metrics.py reads running jobs and limits at scrape time
        _current.set(self)  # copied into every task started below, so into every job
        self._plugin_pool = AsyncConnectionPool(self.url, min_size=0, max_size=2, open=False,
                                                kwargs={"autocommit": True}, name="oban-plugins",
                                                check=AsyncConnectionPool.check_connection)
        await self._plugin_pool.open(wait=False)
        self.pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=min(PRODUCER_CONNECTIONS, LANES * len(self.producers)), open=False,
            kwargs={"autocommit": True}, configure=_configure([p.uuid for p in self.producers.values()]),
            name="oban-producers")
        await self.pool.open(wait=False)
        for producer in self.producers.values():
            producer.pool = self.pool
        self.presence.start()
        self.notifier.start()
        self.peer.start(self._plugin_pool)
        for producer in self.producers.values():
            producer.start()
        for plugin in self.plugins:
            plugin.start(self)
        # Wait until queues have made their first cycle, the notifier listens and the producers
        # are present, so a caller that inserts right after start() is heard.
        waits = [p.started.wait() for p in self.producers.values()] + [
            self.notifier.connected.wait(), asyncio.to_thread(self.presence.connected.wait, 10)]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=10)
        except TimeoutError:
            log.warning("runtime started before every queue and the notifier were ready")
        self._check_task = asyncio.create_task(self._warn_unknown_workers(), name="oban-worker-check")
        log.info("oban_bridge started", extra={"node": self.node, "instance": self.name, "queues": {q: p.limit for q, p in self.producers.items()}})

    async def _check_limits_table(self) -> None:
        """A queue with a global or rate limit needs oban_bridge's own table (limits.py): say so
        before starting, not as a failing fetch every second."""
        limited = sorted(q for q, p in self.producers.items() if p.limiter is not None)
        if not limited:
            return
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            present = await run_async(conn, has_limits_table_plan(self.prefix))
        if not present:
            raise limits_table_missing(self.prefix, limited)

    def _start_queue(self, message: dict[str, Any]) -> None:
        """midwife.ex start_queue/2, for a queue this node was started with and a signal stopped:
        it runs again with the signal's limit (Elixir's `limit` or `local_limit`). A queue the node
        never ran is not started: an Elixir app starting one of its own queues everywhere would
        otherwise have Python nodes fetch jobs whose workers they lack."""
        queue = message.get("queue")
        old = self._stopped.get(queue) if isinstance(queue, str) else None
        if old is None or queue in self.producers or not self._started or self.pool is None:
            if isinstance(queue, str) and queue not in self.producers:
                log.info("ignored start signal for a queue this node was not started with", extra={"queue": queue})
            return
        limit = message.get("limit", message.get("local_limit", old.limit))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            log.warning("ignored start signal without a positive limit", extra={"signal": message})
            return
        del self._stopped[old.queue]
        producer = Producer(pool=self.pool, prefix=self.prefix, queue=old.queue, limit=limit, node=self.node,
                            threads=self.threads, children=self.children, poll_interval=old.poll_interval,
                            paused=message.get("paused") is True, on_outcome=self._on_outcome,
                            lanes=old.max_lanes, uuid=old.uuid, options=old.options)
        self.producers[old.queue] = producer
        producer.start()
        log.info("queue started by signal", extra={"queue": old.queue, "limit": limit, "node": self.node})

    async def _warn_unknown_workers(self) -> None:
        """A queue shared with Elixir nodes must be served by nodes that define every worker in it:
        a job this node fetches for a worker it lacks fails with `unknown worker`. Say so at start,
        rather than at the first such job."""
        try:
            async with self.plugin_pool().connection() as conn:
                rows = await run_async(conn, queue_workers_plan(self.prefix, sorted(self.producers)))
        except Exception as exc:  # noqa: BLE001 - a warning that cannot be computed is skipped
            log.debug("could not check the workers of waiting jobs", extra={"error": str(exc)})
            return
        missing: dict[str, list[str]] = {}
        for row in rows:
            if lookup(row["worker"]) is None:
                missing.setdefault(row["queue"], []).append(row["worker"])
        for queue, names in missing.items():
            log.warning("queue %s holds jobs for workers this node does not define: %s; it will fail "
                        "them with 'unknown worker' (run the queue only on nodes that define every "
                        "worker in it)", queue, ", ".join(names),
                        extra={"queue": queue, "workers": names, "node": self.node})

    async def stop(self, grace: float = 15.0) -> None:
        if not self._started:
            return
        self._started = False
        live.discard(self)
        await asyncio.gather(*(p.stop(grace, self._hurry) for p in self.producers.values()))
        for task in [*self._stops, self._check_task]:
            if task is not None:
                task.cancel()
        # From here a job thread that returns records its own outcome (presence still covers it);
        # what returned before was handed back and is written by the producers' last cycles.
        self.threads.drain(detach=True)
        left = sum(await asyncio.gather(*(p.abandon() for p in self.producers.values())))
        for plugin in self.plugins:
            await plugin.stop()
        await self.peer.stop()
        if self._plugin_pool is not None:
            await self._plugin_pool.close()
            self._plugin_pool = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        await self.notifier.stop()
        self.threads.shutdown()
        self.children.close()
        # Present for as long as a job thread still runs a job left at shutdown: its row stays
        # executing, and no other node may rescue it while it runs.
        self.presence.stop()
        if left:
            log.warning("jobs still running after the grace period were left executing for the lifeline",
                        extra={"node": self.node, "jobs": left})
        log.info("oban_bridge stopped", extra={"node": self.node})

    def hurry(self) -> None:
        """End the shutdown grace now (a second Ctrl-C): jobs still running are left `executing`
        for the lifeline, as at the end of the grace."""
        self._hurry.set()

    def running(self) -> int:
        return sum(len(p.running) for p in self.producers.values())

    # Notifications
    def _on_insert(self, message: dict[str, Any]) -> None:
        producer = self.producers.get(message.get("queue"))  # type: ignore[arg-type]
        if producer is not None:
            producer.wake()

    def _on_gossip(self, message: dict[str, Any]) -> None:
        checks = message.get("checks")
        if not isinstance(checks, list):
            return
        now = time.monotonic()
        for check in checks:
            if not isinstance(check, dict):
                continue
            if check.get("name") == self.name:
                if isinstance(check.get("queue"), str):
                    self._instance_queues[check["queue"]] = now
                if isinstance(check.get("uuid"), str):
                    self._instance_producers[check["uuid"]] = now
            elif check.get("node") == self.node and isinstance(check.get("name"), str):
                self._names_here[check["name"]] = now

    def _on_signal(self, message: dict[str, Any]) -> None:
        """lib/oban/queue/producer.ex handle_info({:notification, :signal, ...}) and
        lib/oban/midwife.ex (stop), for the idents lib/oban.ex scope_signal/2 writes."""
        now = time.monotonic()
        self._names_here = {n: t for n, t in self._names_here.items() if now - t < 60}
        if not addressed(message.get("ident", "any"), self.name, self.node, self._names_here):
            return
        action = message.get("action")
        if action == "pkill":
            job_id = message.get("job_id")
            for producer in self.producers.values():
                if isinstance(job_id, int) and producer.pkill(job_id):
                    log.info("job killed by signal", extra={"job_id": job_id})
            return
        queue = message.get("queue")
        if action == "start":
            self._start_queue(message)
            return
        if queue == "*" and action in ("pause", "resume"):
            targets = list(self.producers.values())  # only pause and resume take "*" in producer.ex
        elif isinstance(queue, str) and queue in self.producers:
            targets = [self.producers[queue]]
        else:
            return
        for producer in targets:
            if action == "pause":
                producer.pause()
            elif action == "resume":
                producer.resume()
            elif action == "scale":
                self._scale(producer, message)
            elif action == "stop":
                self._stop_queue(producer)
            else:
                log.warning("ignored unknown signal", extra={"signal": message})

    def _scale(self, producer: Producer, message: dict[str, Any]) -> None:
        """producer.ex / Pro's smart engine put_meta: `limit` or `local_limit` sets the node's
        limit; `global_limit`, `rate_limit` and `partition` (Pro's scale_queue options, as Oban
        Web sends them) change the queue's coordination, a null removing that limit."""
        pro: dict[str, Any] = {k: message[k] for k in ("global_limit", "rate_limit", "partition") if k in message}
        limit = message.get("limit", message.get("local_limit"))
        if not pro:
            if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
                producer.scale(limit)
                log.info("queue scaled by signal", extra={"queue": producer.queue, "limit": limit})
            else:
                log.warning("ignored scale signal without a positive limit", extra={"signal": message})
            return
        old = producer.options
        spec: dict[str, Any] = {"local_limit": limit if limit is not None else producer.limit}
        if old.global_limit is not None:
            spec["global_limit"] = old.global_limit
        if old.rate_limit is not None:
            spec["rate_limit"] = {"allowed": old.rate_limit.allowed, "period": old.rate_limit.period}
        if old.partition is not None:
            spec["partition"] = old.partition.as_meta()
        if "partition" not in pro and any(isinstance(v, dict) and "partition" in v for v in pro.values()):
            spec.pop("partition", None)  # the new limit brings its own partition
        spec.update(pro)
        spec = {k: v for k, v in spec.items() if v is not None}
        try:
            options = queue_options(producer.queue, spec)
        except (ValueError, TypeError) as exc:
            log.warning("ignored scale signal with bad options", extra={"signal": message, "error": str(exc)})
            return
        task = asyncio.create_task(self._reconfigure(producer, options), name=f"oban-scale-{producer.queue}")
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def _reconfigure(self, producer: Producer, options: QueueOptions) -> None:
        if options.limited and producer.limiter is None:
            async with self.plugin_pool().connection() as conn:
                if not await run_async(conn, has_limits_table_plan(self.prefix)):
                    log.warning("ignored scale signal: global and rate limits need `oban-bridge migrate --limits`",
                                extra={"queue": producer.queue})
                    return
        producer.reconfigure(options)
        log.info("queue scaled by signal", extra={"queue": producer.queue, "options": options.describe()})

    def _stop_queue(self, producer: Producer) -> None:
        """midwife.ex stop_queue/2: the queue stops fetching, its running jobs finish (their
        outcomes written), then it is gone from this node and from its check-ins."""
        async def stop() -> None:
            await producer.stop(None)
            if self.producers.get(producer.queue) is producer:
                del self.producers[producer.queue]
                self._stopped[producer.queue] = producer
            log.info("queue stopped by signal", extra={"queue": producer.queue, "node": self.node})

        if not producer.stopping:
            task = asyncio.get_running_loop().create_task(stop(), name=f"oban-stop-{producer.queue}")
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)
