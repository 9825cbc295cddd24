"""Tissue classes of the lung-CT label volume."""

from __future__ import annotations

import enum

__all__ = ["MAX_LESIONS", "Label"]


class Label(enum.IntEnum):
    """Tissue classes of the label volume (stored as uint8)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    AIRWAY = 4
    VESSEL = 5
    HEART = 6
    MEDIASTINUM = 7
    BONE = 8
    RIB = 9
    STERNUM = 10
    SOFT_TISSUE = 11
    TABLE = 12
    TUMOUR = 100


#: Most lesions one volume can hold (labels TUMOUR .. 255).
MAX_LESIONS = 256 - int(Label.TUMOUR)
