"""One producer per queue (lib/oban/queue/producer.ex): demand, dispatch, pause/resume/scale,
pkill, graceful stop.

Each cycle is one statement that records the outcomes of finished jobs and fetches work for the
slots they free (`queries/ack_fetch_jobs.sql`). Three rules, Oban's:

- **A slot frees when the job's outcome has committed.** A job holds its slot from the fetch until
  the statement carrying its ack commits; only a cycle's own acks free slots for that same cycle's
  fetch (they commit together). Cycles in flight reserve their demand before they start. So at no
  instant does the node run more than `limit` jobs of the queue, however many cycles are in
  flight, and a crash loses no outcome: a job is either acked or still `executing`.
- **A fetch is asked for, never chained.** The producer fetches at start, on an `insert`
  notification for its queue, on resume and scale, when finishing jobs free slots while the last
  fetch came back full, and on its poll timer (covering a notifier outage). A fetch that comes
  back short means the queue is drained: the producer then waits, costing nothing, as Elixir's
  `schedule_dispatch` does.
- **A job that was asked to stop keeps its slot until it really stops.** Plain-`def` jobs run on
  threads (threads.py), which cannot be killed: at a timeout or a pkill the job is asked to stop
  (`job.cancelled`), keeps its slot and its `executing` row, and gets Elixir's outcome for that
  reason when it returns. Jobs with `isolation="process"` are killed outright (isolation.py).

Completions that arrive while a cycle is in flight are acked together by the next one, which is
where batching comes from without any delay timer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

import psycopg

from .db import run_async, run_sync
from .engine import Ack, ack_fetch_plan
from . import tracing
from .executor import Attempt, Outcome, begin, finish, gate, log_outcome, prepare, run_with_hooks
from .isolation import START_ALLOWANCE, Children
from .job import Job
from .limiter import Limiter
from .limits import QueueOptions
from .pro import hooks
from .threads import JobThreads
from .worker import Cancel, Error, WorkerSpec, lookup

log = logging.getLogger(__name__)

# A fetch held back by a global limit that other nodes fill checks again after this many seconds,
# doubling while it finds nothing, up to the poll interval (Producer._held_back); a producer
# wanting a larger claim asks again as often, doubling up to CLAIM_RETRY_MAX.
CAPPED_RETRY = 0.02
CLAIM_RETRY_MAX = 0.05
# A producer holding a claim renews it this often: it is how it hears that others want a share
# (each renewal is one short transaction under the queue's lock, only while the queue is busy).
CLAIM_RENEW = 0.25


def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def iso_now() -> str:
    """`DateTime.utc_now()` as Jason writes it: ISO 8601, microseconds, Z."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def producer_uuid() -> str:
    """A version-8 UUID marks a producer as oban_bridge's, so the lifeline can tell when it is gone
    (queries/rescue_orphans.sql); Elixir producers use version 4."""
    return str(uuid.UUID(int=(uuid.uuid4().int & ~(0xF << 76)) | (0x8 << 76)))


def _within_deadline(attempt: Attempt, wait: float) -> tuple[float, str]:
    """`wait` as a timeout, or a Pro forced deadline's remaining time when that is sooner (the
    attempt is then stopped for its deadline, as prepare() arranges when it is sooner at once;
    `by_deadline` stays prepare()'s, so the child's start still re-arms the job's own timeout)."""
    pro = attempt.spec.pro if attempt.spec is not None else None
    remaining = pro.remaining(attempt.job) if pro is not None else None
    if remaining is not None and remaining <= wait:
        return remaining, "deadline"
    return wait, "timeout"


class Producer:
    def __init__(
        self,
        *,
        pool: Any,
        prefix: str,
        queue: str,
        limit: int,
        node: str,
        threads: JobThreads,
        children: Children | None = None,
        poll_interval: float = 1.0,
        paused: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
        lanes: int = 2,
        resolve: Callable[[str], WorkerSpec | None] = lookup,
        uuid: str | None = None,
        options: QueueOptions | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"queue {queue!r}: limit must be at least 1, got {limit}")
        self.pool = pool
        self.prefix = prefix
        self.queue = queue
        self.limit = limit
        self.node = node
        # A queue started again after a stop keeps its uuid: its presence lock is already held.
        self.uuid = uuid or producer_uuid()
        self.paused = paused
        self.poll_interval = poll_interval
        self.threads = threads
        self.children = children or Children()
        self.on_outcome = on_outcome
        self.max_lanes = max(1, lanes)
        self.resolve = resolve
        self.options = options or QueueOptions(local_limit=limit)
        # A global or rate limit: fetches coordinate with the other nodes (limiter.py).
        self.limiter = Limiter(prefix, queue, self.options, poll_interval=poll_interval) if self.options.limited else None
        self._capped = False  # the last fetch left jobs the limits held back
        self._capped_retry = CAPPED_RETRY
        self._rate_timer: asyncio.TimerHandle | None = None
        # A global limit over the whole queue: this producer's claim (limiter.claims, limit_claim.sql).
        self._cap = 0  # jobs it may run: it fetches no more
        self._claimed = 0  # what its row holds (>= what it runs)
        self._share = 1  # its fair share, as the last renewal computed it
        self._claiming = False
        self._claim_at = 0.0
        self._claim_retry = CAPPED_RETRY
        self._claim_timer: asyncio.TimerHandle | None = None
        self._claim_due: float | None = None  # when the timer wakes the loop for a renewal (monotonic)
        # Jobs holding a slot: fetched, and their outcome not yet committed.
        self.running: dict[int, Attempt] = {}
        self._pending: list[Ack] = []  # finished, not yet sent
        self._reserved = 0  # slots the cycles in flight may take beyond those their acks free
        self._inflight = 0
        self._more = True  # the queue may hold available jobs: a fetch is worth its round trip
        self._backlog = False  # the last fetch came back full: more are surely waiting
        self._fetching = 0  # cycles in flight that fetch
        self._wakes = 0  # external reasons to fetch, counted (see _cycle)
        self._last_fetch = 0.0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing running, pending or in flight
        self._stopping = False
        self._abandoned = False
        self._task: asyncio.Task[None] | None = None
        self._cycles: set[asyncio.Task[None]] = set()
        self._early_pkills: dict[int, float] = {}
        self._delay = 0.05
        self.started = asyncio.Event()
        self.started_at = iso_now()
        self.shutdown_started_at: str | None = None

    @property
    def lanes(self) -> int:
        """Cycles this queue keeps in flight. A second one pays for itself from limit 100 up (PostgreSQL
        works on one batch while Python handles the other's; bench/README.md), and costs below:
        small batches, twice the statements, for jobs a single cycle fetches as fast."""
        return self.max_lanes if self.limit >= 100 else 1

    def check(self, name: str) -> dict[str, Any]:
        """The producer's meta as basic.ex init/check_meta/refresh keep it, for gossip; a limited
        queue adds Pro's Smart engine keys (local_limit, global_limit, rate_limit)."""
        meta = {
            "limit": self.limit,
            "name": name,
            "node": self.node,
            "paused": self.paused,
            "queue": self.queue,
            "refresh_interval": 60_000,
            "running": sorted(self.running),
            "shutdown_started_at": self.shutdown_started_at,
            "started_at": self.started_at,
            "updated_at": iso_now(),
            "uuid": self.uuid,
        }
        if self.limiter is not None:
            meta.update(self.limiter.check_meta(self.limit))
        return meta

    # --- control, from notifications, signals or the API ----------------------------------------
    def wake(self) -> None:
        """More jobs may be available (an insert notification, a resume, a scale): fetch."""
        self._more = True
        self._wakes += 1
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake()

    def scale(self, limit: int) -> None:
        if limit >= 1:
            self.limit = limit
            self.wake()

    def reconfigure(self, options: QueueOptions) -> None:
        """New limits from a scale signal (Pro's scale_queue options): the next fetch obeys them."""
        self.options = options
        self.limiter = Limiter(self.prefix, self.queue, options, poll_interval=self.poll_interval) if options.limited else None
        self._capped = False
        self.scale(options.local_limit)

    def pkill(self, job_id: int) -> bool:
        """Stop a running job as Elixir's producer does on a `pkill` signal; its outcome is written
        as Elixir writes a killed job's (cancelled, `{:cancel, :shutdown}`) once it has stopped."""
        attempt = self.running.get(job_id)
        if attempt is None:
            # Maybe fetched by a cycle whose rows are not handed out yet (the signal can overtake
            # them): remembered briefly, such a job is recorded killed instead of run.
            now = time.monotonic()
            self._early_pkills = {j: t for j, t in self._early_pkills.items() if now - t < 10.0}
            if len(self._early_pkills) < 10_000:
                self._early_pkills[job_id] = now
            return False
        return attempt.request_stop("pkill")

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"oban-producer-{self.queue}")

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, grace: float | None, hurry: asyncio.Event | None = None) -> None:
        """Stop fetching and give running jobs `grace` seconds (None: as long as they take); their
        acks are written as they finish. At shutdown the runtime then detaches the job threads
        and calls `abandon`; a queue stopped alone ends its loop once idle."""
        self._stopping = True
        self.paused = True  # basic.ex shutdown/2: paused, with shutdown_started_at set
        self.shutdown_started_at = iso_now()
        self._wake.set()
        waits = [asyncio.ensure_future(self._idle.wait())]
        if hurry is not None:  # a second Ctrl-C: the grace ends now
            waits.append(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def abandon(self) -> int:
        """Ask the jobs still running to stop and end the loop once what finished is written.

        `async def` jobs are cancelled and left `executing` for the lifeline, as Elixir leaves
        them on shutdown: never lost. Job threads were detached first (threads.drain), so a plain-def job that
        returns from now on records its own outcome (`_finished_late`). Returns how many were left."""
        left = [a for a in self.running.values() if not a.finished]
        for attempt in left:
            attempt.request_stop("shutdown")
        self._abandoned = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        return len(left)

    # --- the loop -----------------------------------------------------------------------------------
    def _demand(self, acks: int) -> int:
        """Slots a new cycle may fill: the limit, less every job holding a slot, plus the slots this
        cycle's own acks free (they commit in the same statement), less what the cycles in flight
        may take beyond the slots their own acks free; at most a `lanes`-th of the limit, so
        cycles alternate on the lanes.

        Invariant: running + Σ in flight max(0, demand − acks) ≤ limit. A commit changes `running`
        by fetched − acks ≤ demand − acks and drops that cycle's reservation, so it holds."""
        if self.paused or self._stopping or not self._more:
            return 0
        if self._fetching and not self._backlog:
            return 0  # one fetch at a time until one comes back full: a poll is one statement
        limit = self.limit if not self._claims else min(self.limit, self._cap)
        free = limit - len(self.running) + acks - self._reserved
        return max(0, min(free, -(-self.limit // self.lanes)))

    def _done_waiting(self) -> bool:
        if self._pending or self._inflight:
            return False
        if self._abandoned:
            return True
        return self._stopping and not self.running

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            if now - self._last_fetch >= self.poll_interval:
                self._more = True  # the poll: a notification may have been missed
            if self._claims:
                self._maybe_claim(now)
            self._dispatch(now)
            self.started.set()
            if not self.running and not self._pending and not self._inflight:
                self._idle.set()
            else:
                self._idle.clear()
            if self._done_waiting() and not self._claiming:
                if self._claims and self._claimed:
                    await self._claim(0, sum(1 for a in self.running.values() if not a.finished))
                return
            timeout = self._last_fetch + self.poll_interval - time.monotonic()
            try:
                async with asyncio.timeout(timeout if timeout > 0 else self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _dispatch(self, now: float) -> None:
        """Start cycles while a lane is free and one has something to do."""
        while self._inflight < self.lanes:
            acks = self._pending
            demand = self._demand(len(acks))
            if not acks and not demand:
                return
            if self._inflight and len(acks) + demand < max(1, self.limit // (4 * self.lanes)):
                # A cycle is in flight and wakes us when it returns: let a few more acks gather
                # rather than spend a round trip on one or two. Their slots stay held meanwhile,
                # so this costs latency, never the limit.
                return
            self._pending = []
            extra = max(0, demand - len(acks))
            self._reserved += extra
            self._inflight += 1
            if demand:
                self._fetching += 1
                self._last_fetch = now
            task = asyncio.create_task(self._cycle(acks, demand, extra, self._wakes))
            self._cycles.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._cycles.discard)

    async def _cycle(self, acks: list[Ack], demand: int, extra: int, wakes: int) -> None:
        fetched = None
        try:
            async with self.pool.connection() as conn:
                if self.limiter is not None and demand and not self.limiter.claims:
                    fetched = await self.limiter.ack_fetch(conn, acks, demand, [self.node, self.uuid])
                    rows = fetched.rows
                else:
                    rows = await run_async(conn, ack_fetch_plan(
                        self.prefix, self.queue, acks, demand, [self.node, self.uuid]))
        except Exception as exc:  # noqa: BLE001 - psycopg's, the pool's, or a bug building the plan
            # Nothing was written (the statement is its own transaction): keep the acks and the
            # slots, back off, and try again (the pool replaces a broken connection).
            self._pending = acks + self._pending
            self._reserved -= extra
            self._fetching -= 1 if demand else 0
            log.warning("producer cycle failed, retrying",
                        extra={"queue": self.queue, "error": str(exc).strip(), "retry_in": self._delay})
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, 5.0)
            self._inflight -= 1
            self._wake.set()
            return
        self._delay = 0.05
        try:
            # Committed: the acked jobs' slots are free, the fetched jobs hold theirs.
            running = self.running
            for ack in acks:
                running.pop(ack.id, None)
            for row in rows:
                try:
                    self._start(Job.from_tuple(row))
                except Exception:  # noqa: BLE001 - a bug must not stall the queue; the lifeline rescues the row
                    log.exception("starting a job failed", extra={"queue": self.queue, "job_id": row[0]})
            if demand:
                self._backlog = len(rows) == demand
                if not self._backlog and wakes == self._wakes:
                    self._more = False  # drained, and nothing said otherwise since this cycle began
                if fetched is not None:
                    self._held_back(fetched)
        finally:
            if demand:
                self._fetching -= 1
            self._reserved -= extra
            self._inflight -= 1
            self._wake.set()

    # --- claims: a global limit over the whole queue (limiter.claims) ----------------------------
    @property
    def _claims(self) -> bool:
        return self.limiter is not None and self.limiter.claims

    def _maybe_claim(self, now: float) -> None:
        """Renew the claim when one is due: to get more slots (with a backoff while none come), to
        hand back what it no longer uses, and every poll interval while it holds some (the lease;
        and how it hears that others want a share)."""
        if self._claiming:
            return
        used = len(self.running) + self._reserved
        want = max(self.limit, used) if self._more and not self.paused and not self._stopping else used
        if self._claimed > max(self._cap, used) or (self._claimed > want and want <= self._cap):
            due = self._claim_at + 0.01  # slots it may not or need not use: hand them back now
        elif want > self._cap and self._cap < self._share:
            due = self._claim_at + self._claim_retry  # short of its share: slots may free any moment
        elif self._claimed or want > self._cap:
            due = self._claim_at + min(CLAIM_RENEW, self.poll_interval)
        else:
            return
        if now >= due:
            task = asyncio.create_task(self._claim(want, used))
            self._cycles.add(task)
            task.add_done_callback(self._cycles.discard)
        elif self._claim_due is None or self._claim_due > due:
            if self._claim_timer is not None:
                self._claim_timer.cancel()
            self._claim_due = due
            self._claim_timer = asyncio.get_running_loop().call_later(due - now, self._claim_wake)

    def _claim_wake(self) -> None:
        self._claim_due = self._claim_timer = None
        self._wake.set()

    def _claim(self, want: int, used: int) -> Coroutine[Any, Any, None]:
        """Freeze the cap at what runs now, before any other cycle can reserve more (the renewal
        records `used` as the floor of the claim), then renew."""
        self._claiming = True
        previous, wakes = self._cap, self._wakes
        self._cap = min(self._cap, used)  # nothing beyond what runs until the new claim commits
        return self._renew(want, used, previous, wakes)

    async def _renew(self, want: int, used: int, previous: int, wakes: int) -> None:
        assert self.limiter is not None
        try:
            async with self.pool.connection() as conn:
                got = await self.limiter.claim(conn, self.uuid, want, used)
        except Exception as exc:  # noqa: BLE001 - the cap stays at what runs; try again later
            self._claim_retry = min(max(self._claim_retry * 2, 0.05), 5.0)
            log.warning("renewing the queue's share of its global limit failed, retrying",
                        extra={"queue": self.queue, "error": str(exc).strip(), "retry_in": self._claim_retry})
        else:
            self._cap, self._claimed, self._share = got.cap, got.claim, got.target
            if got.cap > previous:
                self._claim_retry = CAPPED_RETRY
            elif want > got.cap:
                self._claim_retry = min(self._claim_retry * 2, CLAIM_RETRY_MAX, self.poll_interval)
            if want > used >= got.want and wakes == self._wakes:
                self._more = False  # no job available: nothing to claim until one is inserted
        finally:
            self._claim_at = time.monotonic()
            self._claiming = False
            self._wake.set()

    def _held_back(self, fetched: Any) -> None:
        """A limited fetch came back short with jobs left: the limits held them back. Fetch again
        when one of ours finishes (a global slot frees), when the rate window moves on, and — for
        slots the other nodes free, which nothing announces — after a short wait that doubles
        while the fetches keep coming back empty (CAPPED_RETRY up to the poll interval)."""
        self._capped = fetched.more and not self._backlog
        if fetched.rows:
            self._capped_retry = CAPPED_RETRY
        if not self._capped:
            return
        delays = []
        if fetched.rate_wait is not None and self.options.rate_limit is not None:
            delays.append(fetched.rate_wait)
        if self.options.global_limit is not None:
            delays.append(self._capped_retry)
            self._capped_retry = min(self._capped_retry * 2, self.poll_interval)
        if delays:
            if self._rate_timer is not None:
                self._rate_timer.cancel()
            self._rate_timer = asyncio.get_running_loop().call_later(
                max(0.005, min(min(delays), self.poll_interval)), self.wake)

    # --- running jobs -------------------------------------------------------------------------------
    def _start(self, job: Job) -> None:
        assert job.id is not None
        if job.id in self.running:
            # Our earlier attempt still runs: the row was taken from us (rescued while this node's
            # presence was briefly gone). Never run a job twice at once; that attempt's outcome
            # will be written over this row.
            log.error("fetched a job this node is still running; not starting it again",
                      extra={"queue": self.queue, "job_id": job.id, "attempt": job.attempt})
            return
        attempt, error = begin(job, self.resolve)
        if tracing._config is not None:
            attempt.span = tracing.start_job_span(job)
        self.running[job.id] = attempt
        try:
            spec = attempt.spec
            if self._early_pkills and self._early_pkills.pop(job.id, None) is not None:
                attempt.stop = "pkill"
                self._finished(attempt, None, None)
            elif error is not None or spec is None:
                self._finished(attempt, None, error)
            elif spec.pro is None and (not spec.is_async or spec.isolation == "process"):
                # The common case, kept free of Tasks and Futures: straight to a job thread.
                try:
                    prepare(attempt)
                except Exception as exc:  # noqa: BLE001 - a failed attempt, as a raise in process is
                    self._finished(attempt, None, exc)
                    return
                self._submit(attempt)
            else:
                attempt.task = asyncio.create_task(self._run(attempt))
                attempt.task.add_done_callback(functools.partial(self._task_done, attempt))
        except BaseException:
            if not attempt.finished:
                self.running.pop(job.id, None)  # nothing runs it: leave the row to the lifeline
            raise

    def _submit(self, attempt: Attempt) -> None:
        """Hand a prepared attempt to a job thread; its outcome comes back through _finished."""
        self._arm_timeout(attempt)
        fn, arg = self._target(attempt)
        self.threads.submit(fn, arg, functools.partial(self._finished, attempt),
                            functools.partial(self._finished_late, attempt))

    def _target(self, attempt: Attempt) -> tuple[Callable[[Any], Any], Any]:
        spec = attempt.spec
        assert spec is not None
        run: Callable[[Job], Any] = spec.perform
        if spec.isolation == "process":
            module = spec.target.__module__
            children = self.children
            started = functools.partial(asyncio.get_running_loop().call_soon_threadsafe, self._child_started, attempt)
            run = lambda job: children.run(module, spec.name, job, attempt, started)  # noqa: E731
        elif attempt.span is not None:
            run = tracing.call_in(attempt.span, run)  # the job's own spans are the attempt's children
        if attempt.hooks and hooks.has(attempt.hooks, "before_process"):
            return functools.partial(run_with_hooks, run), attempt  # the hooks run on the job's thread
        return run, attempt.run_job

    def _arm_timeout(self, attempt: Attempt) -> None:
        if attempt.timeout is not None:
            reason = "deadline" if attempt.by_deadline else "timeout"
            wait = attempt.timeout
            if attempt.spec is not None and attempt.spec.isolation == "process" and not attempt.by_deadline:
                # Until its child starts it (_child_started), and never past a forced deadline.
                wait, reason = _within_deadline(attempt, wait + START_ALLOWANCE)
            attempt.timer = asyncio.get_running_loop().call_later(wait, attempt.request_stop, reason)

    def _child_started(self, attempt: Attempt) -> None:
        """An isolated job's child began perform: its timeout counts from now (isolation.py),
        unless a forced deadline comes sooner."""
        if attempt.finished or attempt.stop is not None or attempt.by_deadline or attempt.timeout is None:
            return
        if attempt.timer is not None:
            attempt.timer.cancel()
        wait, reason = _within_deadline(attempt, attempt.timeout)
        attempt.timer = asyncio.get_running_loop().call_later(wait, attempt.request_stop, reason)

    async def _run(self, attempt: Attempt) -> None:
        """The coroutine path: `async def` workers and Pro workers (whose gate reads the table)."""
        spec = attempt.spec
        assert spec is not None
        result: Any = None
        error: BaseException | None = None
        try:
            early = await gate(attempt, self.pool, self.prefix, lambda: self._stopping) \
                if spec.pro is not None else None
            if early is not None:
                result = early
                # A job the deadline or a halt cancels still finished processing: its
                # after_process hooks run ("regardless of status", the Pro docs).
                attempt.hooks = hooks.for_spec(spec)
            else:
                prepare(attempt)
                if not spec.is_async or spec.isolation == "process":
                    # A thread cannot be cancelled: no task stands for it, so a stop request only
                    # asks, and the slot stays held until the thread returns.
                    attempt.task = None
                    self._submit(attempt)
                    return
                hooked: Any = attempt.run_job
                if attempt.hooks and hooks.has(attempt.hooks, "before_process"):
                    # Hooks are plain functions that may block: never on the loop every queue shares.
                    hooked = await asyncio.to_thread(hooks.before_process, attempt.hooks, attempt.run_job)
                if isinstance(hooked, (Cancel, Error)):
                    result = hooked
                else:
                    attempt.run_job = hooked
                    self._arm_timeout(attempt)
                    if attempt.span is None:
                        result = await spec.perform(attempt.run_job)
                    else:
                        result = await tracing.await_in(attempt.span, spec.perform(attempt.run_job))
        except asyncio.CancelledError:
            if attempt.stop is None:  # cancelled from outside (the loop is going away): no ack
                attempt.stop = "shutdown"
        except Exception as exc:  # noqa: BLE001 - any exception is a failed attempt, as in Elixir
            error = exc
        self._finished(attempt, result, error)

    def _task_done(self, attempt: Attempt, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never runs _run's handlers: finish it here."""
        if not attempt.finished and attempt.task is task:
            if attempt.stop is None:
                attempt.stop = "shutdown"
            self._finished(attempt, None, None)

    def _after_done(self, ack: Ack, _result: Any, _error: BaseException | None) -> None:
        self._pending.append(ack)
        self._wake.set()

    def _after_late(self, ack: Ack, _result: Any, _error: BaseException | None) -> None:
        """On the hook's thread, after the node stopped: the outcome is written on its own."""
        self._write_late(ack, ack.id)

    def _finished_late(self, attempt: Attempt, result: Any, error: BaseException | None) -> None:
        """On the job thread, after the node has stopped: a job left running at shutdown returned.
        Its outcome is written on a connection of its own, while presence still covers the job
        (presence.py waits for this), so a job that completed is not rescued and run again."""
        outcome = finish(attempt, result, error)
        if outcome is None:
            return  # it stopped as asked: no outcome, the lifeline returns it to the queue
        log_outcome(outcome)
        if outcome.after is not None:
            outcome.after()  # already on the job's thread
        self._write_late(outcome.ack, attempt.job.id)

    def _write_late(self, ack: Ack, job_id: int | None) -> None:
        try:
            with psycopg.connect(self.pool.conninfo, autocommit=True, connect_timeout=10) as conn:
                run_sync(conn, ack_fetch_plan(self.prefix, self.queue, [ack], 0, [self.node, self.uuid]))
        except psycopg.Error as exc:
            log.warning("could not record a job that finished after shutdown; the lifeline will rescue it",
                        extra={"queue": self.queue, "job_id": job_id, "error": str(exc).strip()})

    def _finished(self, attempt: Attempt, result: Any, error: BaseException | None) -> None:
        """On the event loop: the job returned (or raised); queue its ack, keep its slot."""
        if attempt.finished:
            return  # never two outcomes for one attempt
        try:
            outcome = finish(attempt, result, error)
        except Exception:  # noqa: BLE001 - a bug here must not leave the slot held forever
            log.exception("recording a job outcome failed", extra={"job_id": attempt.job.id, "queue": self.queue})
            outcome = None
        if outcome is None:
            # Left running at shutdown: nothing is written; the row stays executing.
            self.running.pop(attempt.job.id or 0, None)
        else:
            log_outcome(outcome)
            if self.on_outcome is not None:
                try:
                    self.on_outcome(outcome)
                except Exception:  # noqa: BLE001 - a metrics hook must never fail a job
                    log.exception("on_outcome hook failed")
            if outcome.after is not None:
                # after_process hooks may block: a job thread of this queue runs them, and the job
                # keeps its slot until they return. A slow hook slows its own queue (and a stop
                # waits for it within the grace), never other queues' jobs or the event loop.
                ack = outcome.ack
                self.threads.submit(_call, outcome.after, functools.partial(self._after_done, ack),
                                    functools.partial(self._after_late, ack))
            else:
                self._pending.append(outcome.ack)
        if self._capped and self.options.global_limit is not None:
            self._more = True  # this job's global slot frees with its ack: the next cycle fetches
        self._wake.set()
