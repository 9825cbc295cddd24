"""The DICOMweb front end (PS3.18): QIDO-RS, WADO-RS, STOW-RS and WADO-URI under
``/dicom-web``, the OHIF Viewer at ``/ohif/`` and the OpenAPI document.

Views only translate (STYLE §3.6): parse the request, call the archive,
encode the answer. :func:`register` adds every blueprint to the Flask app
that :func:`synthpacs.web.create_app` builds.
"""

from __future__ import annotations

from flask import Flask

from ..archive.store import MemoryLRU
from . import ohif, openapi, qido, render, stow, uri, wado
from .common import EXTENSION, METADATA_CACHE_BYTES, ROOT, RefCache

BLUEPRINTS = (qido.bp, wado.bp, render.bp, stow.bp, uri.bp, ohif.bp, openapi.bp)

__all__ = ["ROOT", "register"]


def register(app: Flask) -> None:
    app.extensions[EXTENSION] = {"metadata": MemoryLRU(METADATA_CACHE_BYTES), "refs": RefCache()}
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
