"""Run the WSGI app under gunicorn with threaded (gthread) workers.

A refresh may wait on a provider for up to the HTTP timeout; with threads a
slow provider holds one thread, not a whole worker.
"""

from __future__ import annotations

from typing import Any

from tokenkeep.config import Settings


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    """Start gunicorn in the foreground; returns when it stops."""
    from gunicorn.app.base import BaseApplication

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,  # query strings carry authorization codes: never log them
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "tokenkeep",
        "preload_app": False,
    }

    class TokenKeepServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from tokenkeep.web import create_app

            return create_app(settings)

    TokenKeepServer().run()
