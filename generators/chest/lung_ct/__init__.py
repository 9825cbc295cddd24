"""Synthetic lung-cancer chest CT: geometry stage, physics-informed teacher, and the GAN.

:mod:`.geometry` draws a patient's chest as a label map (anatomy plus lung
lesions whose size changes between visits); :mod:`.teacher` turns a label map
into Hounsfield units with partial-volume blur and CT-like noise; the
conditional GAN that learnt from it (:mod:`.networks`, :mod:`.pipeline`,
:mod:`.training`, :mod:`.evaluation`; weights in this folder, see
MODEL_CARD.md) is the default renderer. :mod:`.target` is what the archive
calls. Importing this package does not import torch.
"""

from .geometry import (
    ChestAnatomy,
    CTGrid,
    Label,
    LesionShape,
    LesionSite,
    draw_anatomy,
    label_volume,
    lesion_measurement,
    place_lesions,
)
from .teacher import render_hu

__all__ = [
    "CTGrid",
    "ChestAnatomy",
    "Label",
    "LesionShape",
    "LesionSite",
    "draw_anatomy",
    "label_volume",
    "lesion_measurement",
    "place_lesions",
    "render_hu",
]
