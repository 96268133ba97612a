"""The daemon: APScheduler jobs (push or apply, trim), retries, wake-ups and clean shutdown.

`sync --once` and `run` share one cycle function per role, so the daemon runs exactly the code
paths the tests and the demo run. Transient failures (network, timeouts, deadlocks) are
retried with exponential backoff and jitter; bad input (a refused batch) is reported and
waits a long interval instead of looping.
"""

from __future__ import annotations

import datetime as dt
import gc
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from syncd.app import Node
from syncd.city.triggers import CAPTURE_CHANNEL
from syncd.core.errors import SyncdError
from syncd.core.logs import get_logger
from syncd.core.settings import Settings
from syncd.daemon.lock import NodeLock
from syncd.daemon.metrics import Metrics
from syncd.hub.inbox import NOTIFY_CHANNEL
from syncd.store.db import is_transient
from syncd.store.dialect import dialect_for

log = get_logger("syncd.daemon")

SNAPSHOT_CHECK_SECONDS = 900  # how often the hub daemon looks whether the day's snapshot is due


def tune_gc() -> None:
    """Fewer garbage collections in a long-lived node process.

    Apply and push allocate many short-lived dicts per row; with the default thresholds the
    collector ran often enough to cost about a fifth of apply time. Objects made at startup
    (policy, metadata, modules) are frozen out of its scans.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _log_retry(job: str, metrics: Metrics) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        metrics.retries.labels(job).inc()
        log.warning(
            "retrying",
            job=job,
            attempt=state.attempt_number,
            next_wait_s=round(wait, 2),
            error=str(exc),
        )

    return before_sleep


def with_retries(
    fn: Callable[[], Any],
    job: str,
    settings: Settings,
    metrics: Metrics,
    stop: threading.Event | None,
    attempts: int | None = None,
) -> Any:
    """Run fn, retrying transient failures with capped exponential backoff and jitter."""
    cfg = settings.sync
    stop_cond: Any = (
        stop_after_attempt(attempts) if attempts else stop_when_event_set(stop or threading.Event())
    )
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(initial=0.5, max=cfg.retry_max_wait_seconds, jitter=1.0),
        stop=stop_cond,
        sleep=(stop.wait if stop is not None else time.sleep),  # type: ignore[arg-type]
        before_sleep=_log_retry(job, metrics),
        reraise=True,
    )
    return retrying(fn)


class Daemon:
    """`syncd run`: schedule the node's jobs until SIGTERM/SIGINT, then stop cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.wakes = 0
        self.handled = 0
        self.wake_lock = threading.Lock()
        self.cycle_running = False
        self.metrics = Metrics()
        self.node = Node.open(settings)
        self.node.observer = self.metrics
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self.paused_until = 0.0
        self.round_started = 0.0
        self.publisher: subprocess.Popen[bytes] | None = None  # an insights build in progress

    def _job(self, name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            # Context variables do not cross into the scheduler's worker threads.
            structlog.contextvars.bind_contextvars(node=self.settings.node.id)
            if self.stop.is_set() or time.monotonic() < self.paused_until:
                return
            try:
                with_retries(fn, name, self.settings, self.metrics, self.stop)
            except SyncdError as exc:
                if is_transient(exc):
                    return  # only reached on shutdown: the retry loop was interrupted
                # Bad input is not retried in a loop: report it, wait, serve what we can.
                self.metrics.errors.labels(name, type(exc).__name__).inc()
                self.paused_until = time.monotonic() + self.settings.sync.retry_max_wait_seconds
                log.error(
                    "cycle_failed",
                    job=name,
                    error=str(exc),
                    kind=type(exc).__name__,
                    paused_s=self.settings.sync.retry_max_wait_seconds,
                )
            except Exception as exc:
                self.metrics.errors.labels(name, type(exc).__name__).inc()
                log.exception("cycle_crashed", job=name, error=str(exc))

        return run

    def _on_skipped(self, event: JobEvent) -> None:
        """A run skipped because the last one was still finishing: run again if woken since.

        The scheduler counts a job instance as running until just after our function returns;
        a wake-up in that instant is skipped by it, so it is rescheduled here.
        """
        if event.job_id != "cycle":
            return
        with self.wake_lock:
            outstanding = not self.cycle_running and self.wakes != self.handled
        if outstanding:
            self._run_woken(minimum=0.05)

    def _cycle(self) -> None:
        """The main job: cycles again while wake-ups arrived during the previous round.

        A wake-up counted before a round starts is covered by that round (its batch was
        committed before the NOTIFY, so the round's read of the inbox sees it); one counted
        later makes the loop go round once more. The count is read and the running state
        left under the lock `wake` takes, so no wake-up falls between the two.
        """
        with self.wake_lock:
            self.cycle_running = True
        try:
            while True:
                with self.wake_lock:
                    seen = self.wakes
                self.round_started = time.monotonic()
                self.node.cycle(self.stop)
                with self.wake_lock:
                    if self.wakes == seen or self.stop.is_set():
                        self.cycle_running = False
                        self.handled = seen
                        return
                # Woken meanwhile: go round again, but not sooner than the wake spacing, so
                # a burst of commits travels as one batch rather than one batch each.
                self.stop.wait(self._spacing_left())
        except BaseException:
            with self.wake_lock:
                self.cycle_running = False
            raise

    def _snapshot(self) -> None:
        from syncd.hub.analysis import snapshot_if_due
        from syncd.store.db import translated

        with translated("taking the daily analysis snapshot"):
            taken = snapshot_if_due(self.node.engine, self.node.policy, self.settings.report)
        if taken is not None:
            log.info("snapshot_taken", **{k: str(v) for k, v in taken.items()})

    def _publish(self) -> None:
        """Build the cities' insights if due, in a child process (`syncd insights publish
        --if-due`): at a million customers a build holds gigabytes for a minute or two, and a
        child gives them back to the system when it exits, which a long-lived daemon would not.
        Without a config file to hand the child (settings from the environment only), in here.
        """
        path = self.settings.config_path
        if path is None:
            self.node.publish_if_due()
            return
        argv = [sys.executable, "-m", "syncd", "--config", str(path), "insights", "publish"]
        # Its log lines go where the daemon's go (stderr, same [log] settings).
        child = subprocess.Popen([*argv, "--if-due", "--json"], stdout=subprocess.DEVNULL)
        with self.wake_lock:
            self.publisher = child
        try:
            child.wait()
        finally:
            with self.wake_lock:
                self.publisher = None
        if child.returncode not in (0, 1) and not self.stop.is_set():
            # Killed (out of memory, a signal) before it could record anything itself.
            message = f"insights build process ended with code {child.returncode}"
            log.error("downlink_publish_failed", error=message)
            from syncd.hub import downlink

            downlink.record_error(self.node.engine, message)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def wake(self) -> None:
        """Run the main job now (a batch arrived at the hub, or a city write committed).

        A wake-up during a cycle must not be lost: the batch may have arrived after the cycle
        read the inbox, and the scheduler would skip a second instance of the job. So wake-ups
        are counted, and a running cycle goes round again if the count moved while it ran.
        """
        with self.wake_lock:
            self.wakes += 1
            if self.cycle_running:
                return
        self._run_woken()

    def _spacing_left(self) -> float:
        """Seconds until a wake-up may start a round: `wake_min_interval` after the last began."""
        start = self.round_started + self.settings.sync.wake_min_interval_seconds
        return max(0.0, start - time.monotonic())

    def _run_woken(self, minimum: float = 0.0) -> None:
        """Schedule the main job as soon as the wake spacing allows (and not before minimum)."""
        job = self.scheduler.get_job("cycle")
        if job is not None:
            delay = max(minimum, self._spacing_left())
            job.modify(next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay))

    def run(self) -> int:
        s = self.settings
        lock = NodeLock(self.node.engine, s.node.id)
        lock.acquire()
        tune_gc()
        try:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            if s.metrics.port is not None:
                self.metrics.watch(self.node.status)
                port = self.metrics.serve(s.metrics.port, s.metrics.address, self.node.ready)
                log.info("metrics_listening", port=port, address=s.metrics.address)
            cycle = self._job("push" if s.is_city else "apply", self._cycle)
            self.scheduler.add_job(
                cycle,
                "interval",
                seconds=s.sync.interval_seconds,
                id="cycle",
                next_run_time=dt.datetime.now(dt.UTC),
            )
            if s.is_hub:
                # The day's analysis snapshot (syncd.hub.analysis): checked every quarter
                # hour, taken once a day from [report] snapshot_hour_utc.
                self.scheduler.add_job(
                    self._job("snapshot", self._snapshot),
                    "interval",
                    seconds=SNAPSHOT_CHECK_SECONDS,
                    id="snapshot",
                    next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5),
                )
            if s.is_city:
                self.scheduler.add_job(
                    self._job("trim", self.node.trim),
                    "interval",
                    seconds=s.sync.trim_interval_seconds,
                    id="trim",
                )
            elif s.downlink.enabled and s.downlink.publish_interval_seconds > 0:
                # Its own job (thread): a long build never holds up the apply cycle.
                self.scheduler.add_job(
                    self._job("downlink", self._publish),
                    "interval",
                    seconds=s.downlink.publish_interval_seconds,
                    id="downlink",
                    next_run_time=dt.datetime.now(dt.UTC),
                )
            self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
            self.scheduler.start()
            if dialect_for(self.node.engine).can_listen:
                # The hub hears the submit function, a city its own capture triggers.
                channel = NOTIFY_CHANNEL if s.is_hub else CAPTURE_CHANNEL
                threading.Thread(
                    target=self._listen, args=(channel,), name="syncd-listen", daemon=True
                ).start()
            log.info("daemon_started", role=s.node.role.value, interval_s=s.sync.interval_seconds)
            self.stop.wait()
            self._shutdown()
            log.info("daemon_stopped")
            return 0
        finally:
            self.metrics.close()
            self.node.close()
            lock.release()

    def _shutdown(self) -> None:
        """Stop the scheduler within seconds, whatever its job in flight waits on.

        The job gets `shutdown_grace_seconds` to finish (its transaction commits or rolls back,
        never half); past that, the statements it runs are cancelled, which rolls its
        transaction back and ends it with a transient error that is not retried (stop is set).
        """
        waiting = threading.Thread(
            target=self.scheduler.shutdown, kwargs={"wait": True}, name="syncd-shutdown"
        )
        waiting.start()
        with self.wake_lock:
            child = self.publisher
        if child is not None and child.poll() is None:
            child.terminate()  # an insights build: its transaction rolls back, nothing is lost
        waiting.join(self.settings.sync.shutdown_grace_seconds)
        while waiting.is_alive():
            asked = self.node.cancel_running()
            log.warning("cancelling_job", statements=asked)
            waiting.join(1.0)

    def _listen(self, channel: str) -> None:
        """Run the cycle on NOTIFY (a batch arrived, or a city write committed).

        Polling at the interval stays the fallback, and covers a lost connection too.
        """
        structlog.contextvars.bind_contextvars(node=self.settings.node.id)
        while not self.stop.is_set():
            try:
                raw = self.node.engine.raw_connection()
                dbapi: Any = raw.driver_connection
                # Never back to the pool: it is put in autocommit to LISTEN, and a pooled
                # connection in autocommit would run an apply statement by statement.
                raw.detach()
                try:
                    dbapi.autocommit = True
                    dbapi.execute(f"LISTEN {channel}")
                    log.info("listening", channel=channel)
                    while not self.stop.is_set():
                        for _ in dbapi.notifies(timeout=1.0, stop_after=1):
                            log.debug("woken", channel=channel)
                            self.wake()
                finally:
                    raw.close()
            except Exception as exc:
                log.warning("listen_failed", error=str(exc))
                self.stop.wait(self.settings.sync.retry_max_wait_seconds)


def sync_once(settings: Settings) -> dict[str, Any]:
    """`syncd sync --once`: one cycle, a few retries on transient failures, then exit.

    Under the node's lock, as the daemon runs: beside a running daemon it would submit or
    apply the same batches at the same time (spurious refusals, failed cycles).
    """
    node = Node.open(settings)
    metrics = Metrics()
    node.observer = metrics
    lock = NodeLock(node.engine, settings.node.id)
    try:
        lock.acquire()
        tune_gc()
        result: dict[str, Any] = with_retries(
            lambda: node.cycle(retry_resting=True), "once", settings, metrics, None, attempts=3
        )
        if settings.is_hub:
            result["downlink"] = node.publish_if_due()
        if node.pusher is not None and node.settings.sync.trim_retention_seconds == 0:
            result["trimmed"] = node.trim()
        return result
    finally:
        lock.release()
        node.close()
