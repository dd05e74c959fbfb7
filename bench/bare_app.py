"""The baseline: a bare Flask app returning a constant JSON body, under TokenKeep's gunicorn.

Usage: python bench/bare_app.py PORT WORKERS BODY_JSON

It runs with exactly the gunicorn options `tokenkeep serve` uses
(tokenkeep.server.gunicorn_options), so the only difference measured is
the application.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from flask import Flask, Response, jsonify

from tokenkeep.server import gunicorn_options, run_gunicorn


def create_app(body: dict[str, Any]) -> Flask:
    """A Flask app with one JSON route and a health check."""
    app = Flask(__name__)

    @app.get("/api/token")
    def token() -> Response:
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    """Serve the bare app on 127.0.0.1."""
    port, workers, body = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    options = gunicorn_options(host="127.0.0.1", port=port, workers=workers, threads=8)
    options["proc_name"] = "bare-flask"
    run_gunicorn(lambda: create_app(body), options)


if __name__ == "__main__":
    main()
