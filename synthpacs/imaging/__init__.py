"""IOD builders and renditions (DESIGN §1 ``synthpacs/imaging``).

Builders take the universe's records plus its UID factory and never mint
UIDs, so the same identifiers always give the same bytes (DESIGN §2.1):

* :func:`build_ct_series`: CT Image Storage (PS3.3 A.3), with pydicom;
* :func:`build_segmentation`: Segmentation Storage (PS3.3 A.51), BINARY,
  with highdicom;
* :func:`build_measurement_report`: Comprehensive SR (PS3.3 A.35.3),
  TID 1500 Measurement Report, with highdicom;
* :func:`render_frame` / :func:`encode_image`: rendered JPEG/PNG
  (PS3.18 8.3.5) of any instance, a text card for SR.
"""

from .common import add_clinical_trial_modules, add_patient_study_modules
from .ct import CT_WINDOWS, CTGeometry, WindowCenterWidthExplanationValues, build_ct_series
from .render import encode_image, render_frame
from .seg import build_segmentation
from .sr import build_measurement_report

__all__ = [
    "CT_WINDOWS",
    "CTGeometry",
    "SOP_CLASS_UIDS",
    "WindowCenterWidthExplanationValues",
    "add_clinical_trial_modules",
    "add_patient_study_modules",
    "build_ct_series",
    "build_measurement_report",
    "build_segmentation",
    "encode_image",
    "render_frame",
]

#: SOP classes the builders write.
SOP_CLASS_UIDS = frozenset({
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR Storage
})
