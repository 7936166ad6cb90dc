"""The service's processes: ``audit-engine serve`` (the HTTP API) and ``audit-engine worker``.

``serve`` upgrades the schema, optionally loads the demo, then runs the API with uvicorn: in
this process, or with ``--workers N`` as N processes under uvicorn's own supervisor
(``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N`` runs: it restarts a process
that dies, and stops them all on SIGTERM or SIGINT). Beside the API, unless ``--no-worker``, it
runs one ``audit-engine worker`` child (lease expiry, timeouts, webhooks, audit sealing) and
starts it again if it dies: that is the one-command deployment and the demo. In production the
worker can run as a service of its own (``audit-engine worker`` under systemd or docker, which
restart it), with ``serve --no-worker``.

SIGTERM to ``serve`` alone stops every process it started within about
``SHUTDOWN_GRACE_S + WORKER_STOP_S`` seconds. Each child also asks the kernel to SIGTERM it if
``serve`` itself dies (``PR_SET_PDEATHSIG``), so a ``serve`` killed outright (SIGKILL, a native
crash) leaves no API process or worker behind.

On SQLite, ``serve`` runs one API process (see ``cmd_serve``); ``--workers N`` needs PostgreSQL.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from audit_engine.settings import get_settings

log = logging.getLogger("api.server")

# After SIGTERM, requests in flight (a long poll waits up to 60 s) get this long before uvicorn
# cancels them; with WORKER_STOP_S it keeps the whole stop within 10 s.
SHUTDOWN_GRACE_S = 4
WORKER_STOP_S = 3.0
WORKER_RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def cmd_worker(url: str | None = None, stop: threading.Event | None = None) -> int:
    """``audit-engine worker``: the background worker (lease expiry, timeouts, webhooks, audit
    sealing) in the foreground, until SIGTERM or SIGINT. ``serve`` runs one beside the API."""
    from audit_engine.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [worker] %(message)s")
    if stop is None:
        stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = get_settings()
    run_worker(url or settings.database_url, stop, interval_s=settings.worker_interval,
               chain_check_s=settings.chain_check_seconds)
    return 0


def _prctl() -> Callable[[int, int], int] | None:
    """libc's ``prctl``, resolved ahead of time (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    fn: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    return fn


def _die_with_parent(prctl: Callable[[int, int], int] | None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGTERM the child when this process dies.

    It runs between fork and exec, so it only calls the function resolved beforehand."""

    def set_death_signal() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal


def _api_process_app(factory: Callable[[], Any]) -> Any:
    """Build the app of one API process. In a process spawned by uvicorn's supervisor, first ask
    the kernel to SIGTERM it when the supervisor dies: uvicorn's processes do not notice that
    themselves, and one re-parented to PID 1 would go on serving."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        prctl = _prctl()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent.pid:  # the supervisor died before prctl: stop now
                os.kill(os.getpid(), signal.SIGTERM)
    return factory()


def _h11_protocol(header_timeout: float, body_timeout: float, **kwargs: Any) -> Any:
    """uvicorn's h11 protocol with receive deadlines (``api.connection_guard``). A module-level
    function under ``functools.partial``, so that the config can be pickled to the processes
    of ``--workers N`` (the class ``guarded_h11`` builds cannot be)."""
    from api.connection_guard import GuardedH11Protocol

    protocol = GuardedH11Protocol(**kwargs)
    protocol.header_timeout, protocol.body_timeout = header_timeout, body_timeout
    return protocol


def _uvicorn_config(app_factory: Callable[[], Any], *, host: str, port: int, workers: int) -> Any:
    import uvicorn

    settings = get_settings()
    http: Any = functools.partial(_h11_protocol, settings.header_timeout_seconds, settings.body_timeout_seconds)
    return uvicorn.Config(
        functools.partial(_api_process_app, app_factory), factory=True, host=host, port=port, workers=workers,
        log_level=settings.log_level, access_log=False, http=http,
        # uvicorn types it as int but only hands it to loop.call_later: a float works.
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


class BackgroundWorker:
    """``audit-engine worker`` as a child of ``serve``, started again whenever it exits while
    ``serve`` runs: a native crash in the worker (a what-if replay runs the rules network) must
    not silently stop timeouts."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._prctl = _prctl()
        # The thread that starts a child is its parent for PR_SET_PDEATHSIG: this one lives until stop().
        self._thread = threading.Thread(target=self._run, name="background-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                proc = subprocess.Popen([sys.executable, "-m", "audit_engine.cli", "worker"],
                                        preexec_fn=_die_with_parent(self._prctl))
                self._proc = proc
            print(f"background worker started (pid {proc.pid})", file=sys.stderr, flush=True)
            code = proc.wait()
            if self._stop.is_set():
                return
            print(f"background worker (pid {proc.pid}) exited with {code}; restarting", file=sys.stderr, flush=True)
            self._stop.wait(WORKER_RESTART_DELAY_S)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(WORKER_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def cmd_serve(*, host: str = "127.0.0.1", port: int = 8000, demo: bool = False, workers: int = 1,
              reset_demo: bool = False, worker: bool = True, app_factory: Callable[[], Any] | None = None) -> int:
    """``audit-engine serve``: upgrade the schema, optionally (re)load the demo, serve.

    ``app_factory`` builds the ASGI app in each API process (default ``api.main.create_app``);
    tests pass one that calls ``create_app(engine_factory=...)``. With ``workers > 1`` it must be
    importable by name (a module-level function), as uvicorn's processes are spawned.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from audit_engine.store.db import upgrade_schema

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if reset_demo and not demo:
        print("--reset-demo 只能与 --demo 一起使用：audit-engine serve --demo --reset-demo", file=sys.stderr)
        return 2
    if workers > 1 and settings.database_url.startswith("sqlite"):
        # SQLite has one writer: N API processes would only queue for it. One API process (its
        # threads queue in order on store.db's FairLock) plus the background worker is what is
        # supported on a SQLite file; more processes need PostgreSQL.
        print(f"SQLite 只支持一个 API 进程（--workers {workers}）：多进程请用 PostgreSQL"
              "（AUDIT_DATABASE_URL=postgresql+psycopg://…）。", file=sys.stderr)
        return 2
    if settings.auth_disabled:
        log.warning("AUDIT_AUTH_DISABLED=1: authentication is OFF (local development only)")
    try:
        upgrade_schema(settings.database_url)
    except Exception as exc:
        print(f"无法升级数据库结构（{settings.database_url}）：{exc}", file=sys.stderr)
        return 1
    feed = None
    if demo:
        from audit_engine.demo import DemoFeed, load_demo
        from audit_engine.demo import reset_demo as do_reset

        try:
            if reset_demo and not do_reset(settings.database_url, out=sys.stdout):
                return 1
            summary = load_demo(settings.database_url, out=sys.stdout)
        except Exception as exc:
            log.exception("demo loading failed")
            print(f"演示数据加载失败：{exc}", file=sys.stderr)
            return 1
        if summary.get("engine") is not None:
            feed = DemoFeed(settings.database_url, summary["engine"])
            feed.start()
    if app_factory is None:
        from api.main import create_app

        app_factory = create_app
    config = _uvicorn_config(app_factory, host=host, port=port, workers=workers)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler
    # that kills this process before the clean-up below runs and orphans the background
    # worker. As SystemExit, it unwinds through ``finally`` instead. (uvicorn's supervisor
    # installs handlers of its own and returns.)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    background = BackgroundWorker() if worker else None
    if background is not None:
        background.start()
    try:
        if workers > 1:
            try:
                sock = config.bind_socket()
            except SystemExit:  # uvicorn has logged why (address in use, …)
                return 1
            supervisor = Multiprocess(config, sockets=[sock])
            supervisor.run()
            if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
                return 1  # uvicorn stopped: an API process could not start, and would not on a restart
        else:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:
                return 1
    finally:
        if background is not None:
            background.stop()
        if feed is not None:
            feed.stop()
    return 0
