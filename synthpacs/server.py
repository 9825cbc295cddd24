"""Running the front ends: start, report readiness, stop cleanly.

Used by ``synthpacs serve`` and by tests, which start a server on free
loopback ports (port 0) and stop it when done.
"""

from __future__ import annotations

import logging
import signal
import threading

from . import __version__
from .app import SynthPACS
from .config import Config
from .dimse import DIMSEServer
from .errors import StartupError
from .heap import limit_arenas
from .web import HTTPServer

log = logging.getLogger("synthpacs")


class RunningServer:
    """Both front ends of one SynthPACS, started on construction."""

    def __init__(self, config: Config):
        self.pacs = SynthPACS(config)
        try:
            self.http = HTTPServer(self.pacs.http_app(), config.host, config.http_port)
        except OSError as exc:
            raise StartupError(f"cannot listen for HTTP on {config.host}:{config.http_port}: {exc.strerror or exc}") from None
        self.http.start()
        try:
            self.dimse = DIMSEServer(self.pacs)
        except BaseException:
            self.http.stop()
            raise
        self.dimse.start()
        self.pacs.ready = True  # both front ends are up

    @property
    def http_port(self) -> int:
        return self.http.port

    @property
    def dicom_port(self) -> int:
        return self.dimse.port

    @property
    def base_url(self) -> str:
        return f"http://{self.pacs.config.host}:{self.http.port}"

    def stop(self) -> None:
        self.pacs.ready = False
        self.dimse.stop()
        self.http.stop()
        self.pacs.archive.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_forever(config: Config) -> None:
    limit_arenas()  # before any thread allocates: a long-running server's heap stays near what is alive
    server = RunningServer(config)
    print(
        f"SynthPACS {__version__}: HTTP on {server.base_url}/, DICOM {config.ae_title} on "
        f"{config.host}:{server.dicom_port} (seed {config.seed}, "
        f"{config.patients:,} patients, data in {config.data_dir})",
        flush=True,
    )
    # Import torch and read the weights now, beside the first requests, not inside the first retrieve.
    threading.Thread(target=server.pacs.archive.load_generators, name="load-generators", daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.stop()
