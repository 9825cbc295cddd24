"""The archive: one query and retrieve API for both front ends (DESIGN §1)."""

from .api import Archive, InstanceRef
from .catalog import QueryLevel

__all__ = ["Archive", "InstanceRef", "QueryLevel"]
