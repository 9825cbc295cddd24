"""SynthPACS: the one object that owns the server's state (datasette's ``Datasette``).

The CLI builds it from a :class:`Config`; the front ends receive it; tests
construct it directly on a temporary data directory.
"""

from __future__ import annotations

import logging

from .archive import Archive
from .config import Config

log = logging.getLogger("synthpacs")


class SynthPACS:
    """Configuration, archive and (once started) the network front ends."""

    def __init__(self, config: Config):
        self.config = config
        self.archive = Archive(config)
        self.ready = False

    def http_app(self):
        """The WSGI application of the HTTP front end."""
        from .web import create_app

        return create_app(self)
