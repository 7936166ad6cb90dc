"""Test launcher: the real ``audit-engine serve`` (schema upgrade, uvicorn, its supervisor, the
background worker) with the stand-in engine of ``tests/api/fake_engine.py`` injected through
``create_app(engine_factory=...)``. The service tests exercise HTTP, processes and the store here,
not the rules.

    python tests/service/fake_serve.py [--host H] [--port P] [--workers N] [--no-worker]

``tests/api`` and ``tests/service`` must be on ``PYTHONPATH`` (``svcutil.service_env``): uvicorn's
API processes import :func:`create_fake_app` by name.
"""

from __future__ import annotations

import argparse
import sys

from fastapi import FastAPI


def create_fake_app() -> FastAPI:
    from fake_engine import fake_factory

    from api.main import create_app

    return create_app(engine_factory=fake_factory)


def main(argv: list[str] | None = None) -> int:
    from api.server import cmd_serve

    p = argparse.ArgumentParser(prog="fake_serve")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-worker", dest="worker", action="store_false")
    args = p.parse_args(argv)
    return cmd_serve(host=args.host, port=args.port, workers=args.workers, worker=args.worker,
                     app_factory=create_fake_app)


if __name__ == "__main__":
    sys.exit(main())
