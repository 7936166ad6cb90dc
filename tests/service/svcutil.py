"""Helpers for service tests: a real ``audit-engine serve`` process on a fresh database.

By default the server is ``fake_serve.py``: ``serve`` with the stand-in engine injected through
``create_app(engine_factory=...)``; ``Server(..., fake=False)`` runs ``audit-engine serve`` itself.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "api"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(url: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AUDIT_DATABASE_URL": url,
        "AUDIT_RULEBASE_STORE": str(tmp / "rulebases"),
        "AUDIT_WORKER_INTERVAL": "0.2",
        # fake_serve.py and the stand-in engine, importable by uvicorn's API processes too
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "api"), str(ROOT), env.get("PYTHONPATH", "")]),
    })
    env.pop("AUDIT_AUTH_DISABLED", None)
    return env


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([sys.executable, "-m", "audit_engine.cli", *args], env=env, input=stdin, text=True,
                       capture_output=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


@dataclass
class Server:
    env: dict[str, str]
    port: int
    log: Path
    workers: int = 1
    fake: bool = True  # the stand-in engine (fake_serve.py); False: the real rules network
    worker: bool = True  # False: serve --no-worker
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        out = self.log.open("ab")
        command = [sys.executable, str(HERE / "fake_serve.py")] if self.fake else \
            [sys.executable, "-m", "audit_engine.cli", "serve"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), "--workers", str(self.workers),
             *([] if self.worker else ["--no-worker"])],
            env=self.env, cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            time.sleep(0.2)
        raise AssertionError("server did not become healthy:\n" + self.log.read_text(errors="replace"))

    def kill(self) -> None:
        """SIGKILL the whole process group: API processes and the background worker, no clean-up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def worker_pids(self) -> list[int]:
        """The background workers ``serve`` started, in order."""
        text = self.log.read_text(errors="replace")
        return [int(p) for p in re.findall(r"background worker started \(pid (\d+)\)", text)]

    def api_pids(self) -> list[int]:
        """The API processes uvicorn's supervisor started (``--workers N``), in order."""
        text = self.log.read_text(errors="replace")
        return [int(p) for p in re.findall(r"Started server process \[(\d+)\]", text)]


@dataclass
class Deployment:
    url: str
    env: dict[str, str]
    key: str
    pharmacist_password: str
    tmp: Path


def deploy(url: str, tmp: Path) -> Deployment:
    env = service_env(url, tmp)
    out = cli(env, "institution", "add", "LEAD001", "县人民医院", "--level", "县级医院")
    cli(env, "institution", "add", "TOWN01", "城关镇卫生院", "--level", "乡镇卫生院")
    key = re.search(r"(ak_\S+)", out)
    assert key, out
    cli(env, "user", "add", "yaoshi", "--role", "pharmacist", "--institution", "LEAD001", stdin="pw-yaoshi-12\n")
    return Deployment(url, env, key.group(1), "pw-yaoshi-12", tmp)
