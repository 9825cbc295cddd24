"""IOD builders and renditions (DESIGN §1 ``synthpacs/imaging``).

Targets hand typed specs (:mod:`.spec`) to :func:`.registry.build`, which
dispatches by SOP class to a builder; builders take identity from the specs
and never mint UIDs, so the same identifiers always give the same bytes
(DESIGN §2.1). Nothing here imports the archive.

* :func:`build_ct_series`: CT Image Storage (PS3.3 A.3), with pydicom;
* :func:`build_segmentation`: Segmentation Storage (PS3.3 A.51), BINARY, with highdicom;
* :func:`build_measurement_report`: Comprehensive SR (PS3.3 A.35.3), TID 1500, with highdicom;
* :func:`build_color_images`: VL Photographic Image Storage (PS3.3 A.32.4);
* :func:`build_ecg`: 12-lead ECG Waveform Storage (PS3.3 A.34.3);
* :func:`render_frame` / :func:`encode_image`: rendered JPEG/PNG (PS3.18 8.3.5) of any instance.
"""

from .common import add_clinical_trial_modules, add_patient_study_modules
from .ct import CT_WINDOWS, CTGeometry, WindowCenterWidthExplanationValues, build_ct_series
from .ecg import build_ecg
from .photo import build_color_images
from .registry import build, builder_for, renders
from .render import encode_image, render_frame
from .seg import build_segmentation
from .sr import build_measurement_report

__all__ = [
    "CT_WINDOWS",
    "CTGeometry",
    "WindowCenterWidthExplanationValues",
    "add_clinical_trial_modules",
    "add_patient_study_modules",
    "build",
    "build_color_images",
    "build_ct_series",
    "build_ecg",
    "build_measurement_report",
    "build_segmentation",
    "builder_for",
    "encode_image",
    "render_frame",
    "renders",
]
