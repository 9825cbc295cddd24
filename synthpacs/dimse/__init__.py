"""The DIMSE front end (pynetdicom): C-ECHO, C-FIND, C-MOVE, C-GET, C-STORE and Modality Worklist."""

from .server import DIMSEServer

__all__ = ["DIMSEServer"]
