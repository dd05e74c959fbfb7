"""Run the WSGI app under gunicorn with threaded (gthread) workers.

A refresh may wait on a provider for up to the HTTP timeout; with threads a
slow provider holds one thread, not a whole worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenkeep.config import Settings


def gunicorn_options(
    *, host: str, port: int, workers: int, threads: int, log_level: str = "info"
) -> dict[str, Any]:
    """The gunicorn settings TokenKeep runs with (the benchmarks reuse them)."""
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,  # query strings carry authorization codes: never log them
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "proc_name": "tokenkeep",
        "preload_app": False,
    }


def run_gunicorn(load: Callable[[], Any], options: dict[str, Any]) -> None:
    """Run the WSGI app returned by `load` (called in each worker) until gunicorn stops."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load()

    Server().run()


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    """Start gunicorn in the foreground; returns when it stops."""

    def load() -> Any:
        from tokenkeep.web import create_app

        return create_app(settings)

    options = gunicorn_options(
        host=host, port=port, workers=workers, threads=threads, log_level=settings.log_level
    )
    run_gunicorn(load, options)
