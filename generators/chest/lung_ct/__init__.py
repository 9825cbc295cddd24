"""Synthetic lung-cancer chest CT: geometry stage, physics-informed teacher, and the GAN.

:mod:`.geometry` draws a patient's chest as a label map (anatomy plus lung
lesions whose size changes between visits); :mod:`.teacher` turns a label map
into Hounsfield units with partial-volume blur and CT-like noise; the
conditional GAN that learnt from it (:mod:`.networks`, :mod:`.pipeline`,
:mod:`.training`, :mod:`.evaluation`; weights in this folder, see
MODEL_CARD.md) is the default renderer. :mod:`.plan` is the study plan the
catalog is built from; :mod:`.target` makes the typed IOD specs.
``TARGET`` is the package's one declared object (the zoo's contract).
Importing this package does not import torch.
"""

from pathlib import Path

from synthpacs.generation.contract import Lazy, ZooTarget

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
from .plan import SLOTS, LungCTAcquisition, plan
from .target import LatentWalk
from .teacher import render_hu

TARGET = ZooTarget(
    name="chest/lung-ct",
    title="Lung-cancer chest CT (label map -> HU, conditional GAN)",
    slots=SLOTS,
    plan=plan,
    renderers=("gan", "teacher"),
    load=Lazy(f"{__name__}.target", "load"),
    fingerprint=Lazy(f"{__name__}.target", "fingerprint"),
    acquisition=LungCTAcquisition,
    aliases=("lung-ct", "lung_ct"),
    folder=Path(__file__).resolve().parent,
    # Capabilities import torch only when called.
    training=Lazy(f"{__name__}.training", "train"),
    evaluation=Lazy(f"{__name__}.evaluation", "evaluate", "summary_rows"),
    interpolation=LatentWalk(),
)

__all__ = [
    "TARGET",
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
