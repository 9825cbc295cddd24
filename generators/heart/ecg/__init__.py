"""Synthetic 12-lead resting ECG for cardiac safety, on the pretrained DeepFake ECG generator.

:mod:`.rhythm` is the geometry stage (a subject's rates and intervals at a
visit, a drug's effect on QTc, occasional findings); :mod:`.network` the
pretrained Pulse2Pulse generator of the PyPI package ``deepfake-ecg``;
:mod:`.warp` re-times its beats to the rhythm; :mod:`.measure` delineates
the result (neurokit2), whose values are the ground truth; :mod:`.leads`
derives the limb leads. ``TARGET`` is the package's one declared object.
Importing this package imports neither torch nor neurokit2.
"""

from pathlib import Path

from synthpacs.generation.contract import Lazy, ZooTarget

from .checkpoint import fingerprint
from .export import ECGFiles, LatentWalk
from .plan import SLOTS, ECGAcquisition, plan

TARGET = ZooTarget(
    name="heart/ecg",
    title="Resting 12-lead ECG (DeepFake ECG GAN, re-timed to the subject's rhythm)",
    slots=SLOTS,
    plan=plan,
    renderers=("gan",),
    load=Lazy(f"{__name__}.target", "load"),
    fingerprint=fingerprint,
    acquisition=ECGAcquisition,
    aliases=("ecg",),
    folder=Path(__file__).resolve().parent,
    # Capabilities import torch and neurokit2 only when called.
    training=Lazy(f"{__name__}.training", "train"),  # fine-tunes on the user's 10-s ECGs
    evaluation=Lazy(
        f"{__name__}.evaluation", "evaluate", "summary_rows", summary_headers=("quantity", "generated", "real reference")
    ),
    sampling=Lazy(f"{__name__}.target", "sample"),  # raw DeepFake ECG samples (eight leads, microvolts)
    interpolation=LatentWalk(),
    export=ECGFiles(),
)

__all__ = ["TARGET", "ECGAcquisition"]
