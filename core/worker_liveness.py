"""A Celery worker proves it is consuming, not merely alive: canaries, a watchdog and a probe.

A worker can stay up and stop taking messages: after a Redis restart its main thread waited
in recv() for good (fixed at the cause in config/celery.py; upstream reports of the kind are
celery/celery#10205, #8030), and its shutdown could hang in Pool.join
(core/tests/test_celery_broker_outage.py). Its process is there, and in other stalls its
control channel still answers `celery inspect ping`, so no check that asks the process
notices. What does notice is a message that is not consumed:

- every worker consumes its own direct queue as well as its task queues (`worker_direct`: one
  BRPOP over all of them, so a stalled consumer takes nothing from any);
- `CanaryWatchdog`, a thread of the worker's main process that owes nothing to the consumer's
  event loop, sends a canary task to that queue every WORKER_CANARY_INTERVAL_SECONDS; the pool
  process that runs it writes the time to `<node>.canary`;
- the watchdog calls the worker stalled when a canary has waited WORKER_STALL_SECONDS, counted
  from the later of its sending and the last moment every pool process was busy (a worker deep
  in long tasks takes no message, by design), and with every canary since then published: a
  Redis that cannot take the canary is an outage, which a new worker would not fix. A stalled
  worker shuts itself down (SIGTERM: the deploy's soft shutdown, late acks lose nothing) for
  its platform to replace;
- a shutdown is bounded from its first signal (SIGTERM, SIGQUIT or SIGINT; a stall's own
  SIGTERM the main thread never handles counts from the watchdog's send): 10 s after the soft
  shutdown's 25 s the watchdog logs every thread's stack and SIGKILLs the pool processes (a
  pool process that ignores SIGTERM holds Pool.join for good), 5 s later it exits; 40 s in
  all, inside the 45 s every platform waits before its own SIGKILL;
- the watchdog writes its view to `<node>.json` every second; `manage.py worker_alive`, the
  liveness probe of every deployment, reads the two files and fails for a stalled worker, a
  dead one, or one whose watchdog has gone quiet.

The files live in WORKER_LIVENESS_DIR, local to the worker's container. The last canary time
also goes to Redis (CANARY_HASH) for /metrics (core/metrics.py).
"""

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from celery import bootsteps
from celery.signals import worker_process_init

logger = logging.getLogger(__name__)

CANARY_TASK = "core.tasks.worker_canary"
# Message header with the time a task was published (config/celery.py stamps every message).
PUBLISHED_AT_HEADER = "published_at"
# Redis hash: worker node name -> time its last canary ran, for /metrics. A worker that ends
# removes its entry; one killed from outside leaves it until the hourly purge finds it older
# than this (an alert on a silent worker fires meanwhile, then clears).
CANARY_HASH = "celery:worker-canary"
FORGET_SILENT_WORKERS_AFTER_SECONDS = 3600
FORGET_IN_REDIS_SECONDS = 1.0
TICK_SECONDS = 1.0
# Once a shutdown has begun, how much longer than Celery's soft shutdown (25 s) the worker has
# to end before the watchdog SIGKILLs its pool processes, then before it exits. Seen: after a
# Redis outage, a SIGTERM that only sets a flag for a main thread blocked in recv(), and a
# shutdown waiting in Pool.join for a pool process blocked on a pipe nobody reads; in the ECS
# test on a loaded machine, a cold shutdown that had not ended 45 s after SIGTERM (SIGKILL,
# exit 137; where it waited is what the stacks logged at the pool kill are for).
POOL_KILL_MARGIN_SECONDS = 10.0
HARD_EXIT_MARGIN_SECONDS = 15.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)
# The worker's wakeup fd pipe (CanaryWatchdog.watch_shutdown_signals), read end first.
_signal_pipe: tuple[int, int] | None = None


@dataclass
class WorkerState:
    """What the watchdog knows, as `<node>.json`; times are Unix seconds (time.time())."""

    node: str
    pid: int
    queues: list[str]
    interval: float
    stall_after: float
    started_at: float
    updated_at: float
    # The first canary sent since one last ran; None when none is waiting.
    waiting_since: float | None = None
    # The last moment every pool process was running a task.
    busy_at: float | None = None
    last_sent_at: float | None = None
    last_error: str = ""

    def note_canary_ran(self, ran_at: float | None) -> None:
        """A canary that ran after the waiting one was sent answers it (and any resent)."""
        if ran_at is not None and self.waiting_since is not None and ran_at >= self.waiting_since:
            self.waiting_since = None

    def stalled_for(self, now: float) -> float:
        """Seconds the waiting canary has had a free pool process to run in; 0 if none waits."""
        if self.waiting_since is None:
            return 0.0
        return max(0.0, now - max(self.waiting_since, self.busy_at or 0.0))


def state_path(directory: Path, node: str) -> Path:
    return directory / f"{node}.json"


def canary_path(directory: Path, node: str) -> Path:
    return directory / f"{node}.canary"


def write_atomically(path: Path, text: str) -> None:
    """The probe never reads half a file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(text)
    partial.replace(path)


def read_state(path: Path) -> WorkerState:
    return WorkerState(**json.loads(path.read_text()))


def read_canary_ran_at(directory: Path, node: str) -> float | None:
    """When a canary of this worker last ran, or None."""
    try:
        return float(canary_path(directory, node).read_text())
    except (FileNotFoundError, ValueError):
        return None


def record_canary_ran(directory: Path, node: str, ran_at: float) -> None:
    write_atomically(canary_path(directory, node), repr(ran_at))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def verdict(state: WorkerState, canary_ran_at: float | None, now: float) -> tuple[bool, str]:
    """(alive, why) for one worker: the probe's rule, from the files alone."""
    if not process_alive(state.pid):
        return False, f"{state.node}: process {state.pid} is not running"
    quiet = now - state.updated_at
    # The watchdog writes every second; a publish to a hung Redis can hold it ~15 s.
    if quiet > state.stall_after:
        return False, f"{state.node}: watchdog silent for {quiet:.0f} s (process frozen?)"
    state.note_canary_ran(canary_ran_at)  # it may have run since the watchdog last looked
    stalled = state.stalled_for(now)
    if stalled > state.stall_after:
        return False, (
            f"{state.node}: stalled, a canary has waited {stalled:.0f} s with a pool process "
            f"free (bound {state.stall_after:.0f} s); queues {','.join(state.queues)}"
        )
    last = f"{now - canary_ran_at:.0f} s ago" if canary_ran_at else "not yet"
    waiting = f", one waiting {stalled:.0f} s" if state.waiting_since is not None else ""
    return True, f"{state.node}: consuming (last canary ran {last}{waiting})"


def probe(directory: Path, node: str = "", now: float | None = None) -> tuple[bool, list[str]]:
    """Every worker of this container (or the one named) must be alive; at least one must be.

    State files of processes that are gone are skipped when no node is named: a container's
    earlier worker leaves its file behind after a restart.
    """
    now = time.time() if now is None else now
    paths = [state_path(directory, node)] if node else sorted(directory.glob("*.json"))
    lines, healthy, checked = [], True, 0
    for path in paths:
        try:
            state = read_state(path)
        except FileNotFoundError:
            lines.append(f"{node}: no state in {directory} (not started, or another folder)")
            healthy = False
            continue
        except (ValueError, TypeError) as error:
            lines.append(f"{path.name}: unreadable ({error})")
            healthy = False
            continue
        if not node and not process_alive(state.pid):
            continue
        checked += 1
        ok, why = verdict(state, read_canary_ran_at(directory, state.node), now)
        healthy = healthy and ok
        lines.append(why)
    if not node and checked == 0:
        lines.append(f"no running worker has state in {directory}")
        healthy = False
    return healthy, lines


# --- In the worker ------------------------------------------------------------------------


class CanaryWatchdog:
    """The thread described above; `CanaryWatchdogStep` starts and stops it."""

    def __init__(self, worker, *, directory: Path, interval: float, stall_after: float):
        self.worker = worker
        self.app = worker.app
        self.node = worker.hostname
        self.directory = directory
        now = time.time()
        self.state = WorkerState(
            node=self.node,
            pid=os.getpid(),
            queues=sorted(self.app.amqp.queues.consume_from),
            interval=interval,
            stall_after=stall_after,
            started_at=now,
            updated_at=now,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary-watchdog", daemon=True)
        self.hard_exit_after = (
            worker.app.conf.worker_soft_shutdown_timeout + HARD_EXIT_MARGIN_SECONDS
        )
        self._deadline_armed = False
        self._deadline_lock = threading.Lock()
        self._outage_logged = False

    def start(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            canary_path(self.directory, self.node).unlink(missing_ok=True)
            self._write()
        except OSError as error:
            # Without its files the worker would run unseen and fail every probe: say why now.
            raise RuntimeError(
                f"WORKER_LIVENESS_DIR={self.directory} is not writable by this worker ({error})"
            ) from error
        self._thread.start()
        self.watch_shutdown_signals()

    def watch_shutdown_signals(self) -> None:
        """The first shutdown signal starts the deadline, even with the main thread stuck.

        Python runs a signal's handler in the main thread, so a main thread blocked in a C call
        never runs Celery's. The C handler does write the signal's number to the wakeup fd,
        which a thread of the watchdog reads. Pool processes drop the fd (on_pool_process_init).
        """
        global _signal_pipe
        if threading.current_thread() is not threading.main_thread():
            return  # a worker embedded in a thread: the signals are not its own
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if previous != -1:  # someone else's: leave it to them
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)
            logger.warning("canary watchdog: the wakeup fd is taken; shutdowns have no deadline")
            return
        _signal_pipe = (read_fd, write_fd)
        threading.Thread(
            target=self._arm_at_shutdown_signal,
            args=(read_fd,),
            name="shutdown-signals",
            daemon=True,
        ).start()

    def _arm_at_shutdown_signal(self, read_fd: int) -> None:
        wanted = {int(signum) for signum in SHUTDOWN_SIGNALS}
        while data := os.read(read_fd, 64):
            if wanted.intersection(data):
                self.arm_shutdown_deadline()
                return

    def arm_shutdown_deadline(self) -> None:
        """Starts the shutdown's clock, once."""
        with self._deadline_lock:
            if self._deadline_armed:
                return
            self._deadline_armed = True
        # A daemon thread: a worker that ends in time ends it too.
        threading.Thread(
            target=self._end_if_still_running, name="shutdown-deadline", daemon=True
        ).start()

    def _end_if_still_running(self) -> None:
        soft = self.app.conf.worker_soft_shutdown_timeout
        time.sleep(soft + POOL_KILL_MARGIN_SECONDS)
        logger.critical(
            "worker %s has not ended %.0f s after its shutdown began; killing its pool "
            "processes. Where each thread is:\n%s",
            self.node,
            soft + POOL_KILL_MARGIN_SECONDS,
            thread_stacks(),
        )
        kill_children()
        time.sleep(HARD_EXIT_MARGIN_SECONDS - POOL_KILL_MARGIN_SECONDS)
        self.hard_exit("did not shut down")

    def stop(self) -> None:
        """The worker is shutting down: stop watching, and make sure the shutdown ends."""
        self.arm_shutdown_deadline()  # a shutdown no signal began (an embedded worker)
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            # A tick in flight ends within a second or two; one held up by the broker is not
            # worth the shutdown's time (its late write is a file the probe skips: dead pid).
            self._thread.join(timeout=2)
        self.forget()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick(time.time())
            except Exception:
                logger.exception("canary watchdog: tick failed")

    def pool_busy(self) -> bool:
        from celery.worker import state

        return len(state.active_requests) >= max(1, self.worker.concurrency or 1)

    def tick(self, now: float) -> None:
        state = self.state
        if self.pool_busy():
            state.busy_at = now
        state.note_canary_ran(read_canary_ran_at(self.directory, self.node))
        if state.last_sent_at is None or now - state.last_sent_at >= state.interval:
            self.send_canary(now)
        state.updated_at = time.time()
        self._write()
        stalled = state.stalled_for(state.updated_at)
        if stalled > state.stall_after:
            self.end_stalled_worker(stalled)

    def send_canary(self, now: float) -> None:
        from celery.utils.nodenames import worker_direct

        state = self.state
        try:
            with self.app.connection_for_write() as connection:
                # Bounded: two tries, not kombu's default of retrying for as long as it takes.
                connection.ensure_connection(max_retries=1, interval_start=1, timeout=10)
                with self.app.amqp.Producer(connection) as producer:
                    self.app.send_task(
                        CANARY_TASK,
                        args=[self.node, now],
                        queue=worker_direct(self.node),
                        producer=producer,
                        ignore_result=True,
                        expires=state.stall_after,
                        retry=False,
                    )
        except Exception as error:
            # The broker cannot take the canary: an outage, not this worker's stall. The clock
            # starts again with the first canary it takes.
            state.waiting_since = None
            state.last_sent_at = now
            state.last_error = f"{type(error).__name__}: {error}"[:300]
            if not self._outage_logged:
                logger.warning("canary watchdog: cannot send a canary (%s)", state.last_error)
                self._outage_logged = True
            return
        if self._outage_logged:
            logger.info("canary watchdog: the broker takes canaries again")
            self._outage_logged = False
        state.last_sent_at = now
        state.last_error = ""
        if state.waiting_since is None:
            state.waiting_since = now

    def end_stalled_worker(self, stalled: float) -> None:
        if self._deadline_armed:
            return  # already shutting down
        logger.critical(
            "worker %s stalled: a canary has waited %.0f s with a pool process free; "
            "shutting down to be replaced (unacknowledged tasks go back to the queue)",
            self.node,
            stalled,
        )
        # A stalled main thread may never run the signal's handler: the clock starts here.
        self.arm_shutdown_deadline()
        os.kill(os.getpid(), signal.SIGTERM)

    def forget(self) -> None:
        """A worker that ends leaves nothing for the probe or the metrics to find."""
        for path in (state_path(self.directory, self.node), canary_path(self.directory, self.node)):
            path.unlink(missing_ok=True)
        # Redis may be away, or its name slow to resolve (getaddrinfo has no timeout of ours):
        # a shutdown waits a second for it at most; an entry left behind is dropped by
        # forget_silent_workers within the hour.
        thread = threading.Thread(target=self._forget_in_redis, name="forget-worker", daemon=True)
        thread.start()
        thread.join(timeout=FORGET_IN_REDIS_SECONDS)

    def _forget_in_redis(self) -> None:
        with contextlib.suppress(Exception):
            from core.health import redis_client

            redis_client().hdel(CANARY_HASH, self.node)

    def hard_exit(self, why: str) -> None:
        """Ends the worker now: its unacknowledged tasks wait out the visibility timeout."""
        logger.critical(
            "worker %s %s within %.0f s; killing it", self.node, why, self.hard_exit_after
        )
        self.forget()
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        kill_children()
        os._exit(70)  # EX_SOFTWARE

    def _write(self) -> None:
        write_atomically(
            state_path(self.directory, self.node), json.dumps(asdict(self.state), sort_keys=True)
        )


def forget_silent_workers(client, now: float) -> list[str]:
    """Removes from CANARY_HASH the workers whose last canary is older than an hour."""
    silent = [
        node.decode()
        for node, ran_at in client.hgetall(CANARY_HASH).items()
        if now - float(ran_at) > FORGET_SILENT_WORKERS_AFTER_SECONDS
    ]
    if silent:
        client.hdel(CANARY_HASH, *silent)
    return silent


class CanaryWatchdogStep(bootsteps.StartStopStep):
    """A CanaryWatchdog in every worker whose app sets `worker_direct` (config/celery.py)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **kwargs):
        self.watchdog: CanaryWatchdog | None = None
        super().__init__(worker, **kwargs)

    def include_if(self, worker) -> bool:
        return bool(worker.app.conf.worker_direct)

    def start(self, worker) -> None:
        from django.conf import settings

        self.watchdog = CanaryWatchdog(
            worker,
            directory=Path(settings.WORKER_LIVENESS_DIR),
            interval=settings.WORKER_CANARY_INTERVAL_SECONDS,
            stall_after=settings.WORKER_STALL_SECONDS,
        )
        self.watchdog.start()

    def stop(self, worker) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    shutdown = stop


@worker_process_init.connect
def on_pool_process_init(**kwargs) -> None:
    """A pool process forked after the watchdog started drops its inherited wakeup fd: its
    signals (a cancel's SIGTERM) are not the worker's shutdown."""
    if _signal_pipe is not None:
        signal.set_wakeup_fd(-1)
        for fd in _signal_pipe:
            with contextlib.suppress(OSError):
                os.close(fd)


def kill_children() -> None:
    """SIGKILL to this process's children (the pool processes)."""
    for child in child_pids(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def thread_stacks() -> str:
    """Every thread's stack, innermost call last, for a log line."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    return "\n".join(
        f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in sys._current_frames().items()
    )


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc (the worker's pool processes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces and parentheses: split after its closing ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children
