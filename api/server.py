"""The ``serve``, ``institution add`` and ``user add`` commands.

``serve`` upgrades the schema, optionally loads the demo, then runs uvicorn and, beside
it, the background worker (lease expiry, timeouts, webhooks) in its own process under a
supervisor thread that restarts it whenever it dies: a native crash in a worker must not
silently stop timeouts. With ``--workers N``, N uvicorn API processes run under the same kind
of supervisor, each on its own SO_REUSEPORT socket. On PostgreSQL they write concurrently; on a SQLite file they still share one
write lock (``store.db``), but the pipeline and HTTP work, most of a review's CPU, run in
parallel.
"""

from __future__ import annotations

import getpass
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Any

from audit_engine.settings import get_settings

log = logging.getLogger("api.server")

WORKER_RESTART_DELAY_S = 1.0


def _exit_with_parent(stop: Any) -> None:
    """Call ``stop()`` once this process's parent is gone (it was SIGKILLed, or died of a native
    crash): a child re-parented to PID 1 must not go on serving or writing to the database."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        print(f"parent {parent} is gone: stopping (pid {os.getpid()})", file=sys.stderr, flush=True)
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(url: str) -> None:
    """Entry point of the background worker process."""
    stop = threading.Event()
    _exit_with_parent(stop.set)
    cmd_worker(url, stop)


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


def _api_main(host: str, port: int, log_level: str) -> None:
    """Entry point of one API process of ``serve --workers N``: uvicorn on a socket of its own."""
    import uvicorn

    from api.connection_guard import uvicorn_options

    config = uvicorn.Config("api.main:create_app", factory=True, host=host, port=port, log_level=log_level,
                            access_log=False, **uvicorn_options(get_settings()))
    server = uvicorn.Server(config)
    _exit_with_parent(lambda: setattr(server, "should_exit", True))
    server.run(sockets=[_listening_socket(host, port)])


def _listening_socket(host: str, port: int) -> Any:
    """A TCP socket bound to host:port with SO_REUSEPORT, so that each API process has its own.

    With one socket shared by all processes, asyncio's accept loop takes every queued
    connection at once, so a burst of new connections (an HIS opening its pool) all landed
    in one process: 8 connections opened in a row went 8/0, measured. With a socket per
    process the kernel spreads connections over them. The socket is made as TCP explicitly:
    with protocol 0, asyncio never sets TCP_NODELAY and every response waits ~40 ms for a
    delayed ACK (measured: /health 44 ms with 2 processes, 1 ms with one).
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """Keeps one child process alive (the background worker, or an API process); restarts it
    whenever it exits for any reason."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.proc = self.ctx.Process(target=self.target, args=self.args, name=self.name, daemon=False)
        self.proc.start()
        print(f"{self.name} started (pid {self.proc.pid})", file=sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if self.proc is not None and not self.proc.is_alive():
                code = self.proc.exitcode
                print(f"{self.name} (pid {self.proc.pid}) exited with {code}; restarting", file=sys.stderr, flush=True)
                self.restarts += 1
                time.sleep(WORKER_RESTART_DELAY_S)
                if not self._stop.is_set():
                    self._spawn()

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()


def worker_supervisor(url: str) -> Supervisor:
    """The supervisor of the background worker (lease expiry, timeouts, webhooks)."""
    return Supervisor("background worker", _worker_main, (url,))


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def cmd_serve(*, host: str = "127.0.0.1", port: int = 8000, demo: bool = False, workers: int = 1,
              reset_demo: bool = False) -> int:
    """``audit-engine serve``: upgrade the schema, optionally (re)load the demo, serve."""
    import uvicorn

    from audit_engine.store.db import upgrade_schema

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if settings.auth_disabled:
        log.warning("AUDIT_AUTH_DISABLED=1: authentication is OFF (local development only)")
    try:
        upgrade_schema(settings.database_url)
    except Exception as exc:
        print(f"无法升级数据库结构（{settings.database_url}）：{exc}", file=sys.stderr)
        return 1
    feed = None
    if reset_demo and not demo:
        print("--reset-demo 只能与 --demo 一起使用：audit-engine serve --demo --reset-demo", file=sys.stderr)
        return 2
    if demo:
        from api.demo import DemoFeed, load_demo
        from api.demo import reset_demo as do_reset

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
    if workers > 1 and settings.database_url.startswith("sqlite") and ":memory:" in settings.database_url:
        print("内存中的 SQLite 不能跨进程共享：按 1 个进程启动。", file=sys.stderr)
        workers = 1
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler
    # that kills this process before the clean-up below runs and orphans the background
    # worker. As SystemExit, it unwinds through ``finally`` instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    supervisor = worker_supervisor(settings.database_url)
    supervisor.start()
    log_level = settings.log_level
    try:
        if workers > 1:
            return _run_processes(host, port, workers, log_level)
        from api.connection_guard import uvicorn_options

        uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level=log_level,
                    access_log=False, **uvicorn_options(settings))
    finally:
        supervisor.stop()
        if feed is not None:
            feed.stop()
    return 0


def _run_processes(host: str, port: int, workers: int, log_level: str) -> int:
    """N API processes, each with its own socket on host:port (see ``_listening_socket``),
    each restarted by its supervisor if it dies; returns on SIGTERM or SIGINT."""
    try:  # fail here, once, rather than in every process's restart loop
        _listening_socket(host, port).close()
    except OSError as exc:
        print(f"无法监听 {host}:{port}：{exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    supervisors = [Supervisor("API process", _api_main, (host, port, log_level)) for _ in range(workers)]
    for sup in supervisors:
        sup.start()
    print(f"serving on http://{host}:{port} with {workers} processes", file=sys.stderr, flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sup in supervisors:
            sup.stop()
    return 0


def cmd_institution_add(code: str, name: str, *, level: str) -> int:
    """``audit-engine institution add``: register an institution, print its API key once.

    The first 县级医院 registered becomes the review centre (牵头医院); later institutions join it.
    """
    import sqlalchemy as sa

    from audit_engine import auth
    from audit_engine.errors import ServiceError
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema
    from audit_engine.store.models import Institution

    url = get_settings().database_url
    upgrade_schema(url)
    db = make_engine(url)
    try:
        with session_scope(db) as s:
            has_centre = s.scalar(sa.select(Institution.id).where(Institution.is_centre).limit(1)) is not None
            inst, key = auth.create_institution(s, code=code, name=name, level=level,
                                                is_centre=(level == "县级医院" and not has_centre))
            centre = inst.is_centre
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    role = "（审方中心/牵头医院）" if centre else ""
    print(f"已登记机构 {code} {name}（{level}）{role}")
    print(f"API 密钥（只显示这一次，请妥善保存）：{key}")
    return 0


def cmd_user_add(username: str, *, role: str, institution: str | None = None) -> int:
    """``audit-engine user add``: create a user; the password comes from standard input."""
    from audit_engine import auth
    from audit_engine.errors import ServiceError
    from audit_engine.store.db import make_engine, session_scope, upgrade_schema

    if sys.stdin.isatty():
        password = getpass.getpass("密码：")
        if getpass.getpass("再次输入密码：") != password:
            print("两次输入的密码不一致", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("密码至少 8 个字符", file=sys.stderr)
        return 1
    url = get_settings().database_url
    upgrade_schema(url)
    db = make_engine(url)
    try:
        with session_scope(db) as s:
            auth.create_user(s, username=username, password=password, role=role, institution_code=institution)
    except ServiceError as err:
        print(f"错误：{err.message}（{err.location}）", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"已创建用户 {username}（{role}{'，' + institution if institution else ''}）")
    return 0
