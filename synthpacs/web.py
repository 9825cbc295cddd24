"""The HTTP front end: a Flask application served by waitress.

Waitress is a production WSGI server that runs in-process in threads, so the
HTTP and DIMSE front ends share one archive (and one instance cache) in one
process on every platform, without a fork.
"""

from __future__ import annotations

import threading

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from . import __version__


def create_app(pacs) -> Flask:
    app = Flask("synthpacs")
    app.config["pacs"] = pacs

    @app.get("/healthz")
    def healthz():
        if not pacs.ready:
            return jsonify(status="starting"), 503
        figures = pacs.archive.catalog.figures()
        return jsonify(status="ok", version=__version__, seed=pacs.config.seed, patients=figures["patients"],
                       studies=figures["studies"], ae_title=pacs.config.ae_title)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.name, message=exc.description, status=exc.code), exc.code

    return app


class HTTPServer:
    """Waitress on a background thread, stoppable (for ``serve`` and for tests)."""

    def __init__(self, app, host: str, port: int, threads: int = 8):
        from waitress.server import create_server

        self._server = create_server(app, host=host, port=port, threads=threads, ident="SynthPACS")
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)
