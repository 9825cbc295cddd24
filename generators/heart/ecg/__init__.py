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

from synthpacs.generation.contract import GeneratorOptions, ZooTarget

from .checkpoint import fingerprint
from .export import ECGFiles, LatentWalk
from .plan import SLOTS, ECGAcquisition, plan


class _Training:
    """Trainable: ``synthpacs train heart/ecg --data DIR`` fine-tunes on the user's ECGs (imports torch when called)."""

    def train(self, request):
        from .training import train

        return train(request)


class _Evaluation:
    """Evaluable: ``synthpacs evaluate heart/ecg`` (imports torch and neurokit2 when called)."""

    summary_headers = ("quantity", "generated", "real reference")

    def evaluate(self, request):
        from .evaluation import evaluate

        return evaluate(request)

    def summary_rows(self, report):
        from .evaluation import summary_rows

        return summary_rows(report)


class _Sampling:
    """Sampleable: raw DeepFake ECG samples, the seed's interface (eight leads, microvolts)."""

    def sample(self, n: int, seed: int, psi: float = 1.0, device: str = "auto"):
        from .target import sample

        return sample(n, seed, device)


def _load(options: GeneratorOptions):
    from .target import load

    return load(options)


TARGET = ZooTarget(
    name="heart/ecg",
    title="Resting 12-lead ECG (DeepFake ECG GAN, re-timed to the subject's rhythm)",
    slots=SLOTS,
    plan=plan,
    renderers=("gan",),
    load=_load,
    fingerprint=fingerprint,
    acquisition=ECGAcquisition,
    aliases=("ecg",),
    folder=Path(__file__).resolve().parent,
    training=_Training(),
    evaluation=_Evaluation(),
    sampling=_Sampling(),
    interpolation=LatentWalk(),
    export=ECGFiles(),
)

__all__ = ["TARGET", "ECGAcquisition"]
