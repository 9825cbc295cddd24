"""The HTTP front end: a Flask application served by waitress.

Waitress is a production WSGI server that runs in-process in threads, so the
HTTP and DIMSE front ends share one archive (and one instance cache) in one
process on every platform, without a fork.

Every response, errors included, carries the CORS headers, and ``OPTIONS``
on any path answers a preflight (research/viewers.md pitfall 1). Every error
is a JSON body ``{"error", "message", "status"}`` that names the problem;
a user's mistake is a 4xx, never a traceback.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from urllib.parse import parse_qs

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from . import __version__, errors

log = logging.getLogger(__name__)

CORS_METHODS = "GET, HEAD, POST, OPTIONS"
CORS_HEADERS = "Accept, Authorization, Content-Type, Range"
CORS_EXPOSE = "Content-Type, Content-Length, Content-Disposition, Warning, Location"
# The synthpacs exceptions a front end maps to HTTP (errors.py).
ERROR_STATUS = {
    errors.InvalidQuery: (400, "Bad Request"),
    errors.NotFound: (404, "Not Found"),
    errors.StoreRefused: (409, "Conflict"),
    errors.GenerationFailed: (503, "Service Unavailable"),
}


def _error(status: int, name: str, message: str):
    return jsonify(error=name, message=message, status=status), status


def create_app(pacs) -> Flask:
    from .dicomweb import register

    app = Flask("synthpacs", static_folder=None)
    app.config["pacs"] = pacs
    json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False
    app.json = json_provider

    @app.get("/healthz")
    def healthz():
        if not pacs.ready:
            return jsonify(status="starting"), 503
        figures = pacs.archive.figures()
        return jsonify(
            status="ok",
            version=__version__,
            seed=pacs.config.seed,
            patients=figures["patients"],
            studies=figures["studies"],
            ae_title=pacs.config.ae_title,
            **pacs.archive.activity(),
        )

    register(app)

    @app.before_request
    def preflight():
        if request.method == "OPTIONS":
            response = Response(status=204)
            del response.headers["Content-Type"]
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = (
                request.headers.get("Access-Control-Request-Headers") or CORS_HEADERS
            )
            response.headers["Access-Control-Max-Age"] = "86400"
            return response
        return None

    @app.after_request
    def cors(response):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(errors.SynthPACSError)
    def synthpacs_error(exc: errors.SynthPACSError):
        for kind, (status, name) in ERROR_STATUS.items():
            if isinstance(exc, kind):
                return _error(status, name, str(exc))
        log.error("request %s %s failed: %s", request.method, request.path, exc)
        return _error(500, "Internal Server Error", str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("request %s %s failed", request.method, request.path)
        return _error(500, "Internal Server Error", f"{type(exc).__name__}: {exc}")

    app.wsgi_app = _ClientRequests(app.wsgi_app, pacs.archive)  # type: ignore[method-assign]
    return app


def _study_of(environ) -> str | None:
    """The study a request is about: ``.../studies/{uid}...`` (DICOMweb) or ``studyUID=`` (WADO-URI)."""
    parts = environ.get("PATH_INFO", "").split("/")
    if "studies" in parts:
        at = parts.index("studies") + 1
        if at < len(parts) and parts[at]:
            return parts[at]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return query.get("studyUID", [None])[0]


_NOT_CLIENT_WORK = frozenset({"/healthz"})  # paths that read no study


class _ClientRequests:
    """WSGI middleware: every request counts as a client waiting until its response is sent.

    A streamed response (a multipart series retrieve) counts until the last
    byte is written or the client goes away (waitress closes the iterable).
    Background generation pauses meanwhile (``Generations.foreground``: a
    prefetch for any request, a study a client touched for requests about
    other studies).
    """

    def __init__(self, app, archive):
        self.app, self.archive = app, archive

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") in _NOT_CLIENT_WORK:  # a monitor's probe must not hold work back
            return self.app(environ, start_response)
        waiting = ExitStack()
        waiting.enter_context(self.archive.client_request(_study_of(environ)))
        try:
            body = self.app(environ, start_response)
        except BaseException:
            waiting.close()
            raise
        return _Closing(body, waiting.close)


class _Closing:
    """A WSGI response iterable that runs ``on_close`` (idempotent) when the server closes it."""

    def __init__(self, body, on_close):
        self.body, self.on_close = body, on_close

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()


class HTTPServer:
    """Waitress on a background thread, stoppable (for ``serve`` and for tests)."""

    def __init__(self, app, host: str, port: int, threads: int = 8):
        from waitress.server import create_server

        # The STOW-RS limit is checked by the app (a JSON 413); waitress's own cap sits above it.
        pacs = app.config.get("pacs") if hasattr(app, "config") else None
        upload_mb = getattr(getattr(pacs, "config", None), "max_upload_mb", 1024)
        self._server = create_server(
            app, host=host, port=port, threads=threads, ident="SynthPACS", max_request_body_size=max(1024, upload_mb + 16) * 2**20
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # Idle keep-alive connections would hold waitress's loop open until they time out:
        # ask each to close (the loop does it when woken), then close the listener.
        for channel in list(getattr(self._server, "_map", {}).values()):
            if hasattr(channel, "will_close") and channel is not self._server:
                channel.will_close = True
        try:
            self._server.pull_trigger()
        except OSError:
            pass
        self._server.close()
        self._thread.join(timeout=5)
        self._server.task_dispatcher.shutdown(timeout=2)
