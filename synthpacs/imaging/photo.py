"""VL Photographic Image Storage (PS3.3 A.32.4): single-frame 8-bit RGB photographs, with pydicom.

=============================  ==========  =====
Module                         PS3.3       Usage
=============================  ==========  =====
Patient                        C.7.1.1     M
Clinical Trial Subject         C.7.1.3     U
General Study                  C.7.2.1     M
Patient Study                  C.7.2.2     U
Clinical Trial Study           C.7.2.3     U
General Series                 C.7.3.1     M
Clinical Trial Series          C.7.3.2     U
General Equipment              C.7.5.1     M
General Acquisition            C.7.10.1    M
General Image                  C.7.6.1     M
Image Pixel                    C.7.6.3     M
Acquisition Context            C.7.6.14    M
VL Image                       C.8.12.1    M
SOP Common                     C.12.1      M
=============================  ==========  =====
"""

from __future__ import annotations

import copy

import numpy as np
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from . import common
from .spec import ColorImageSpec

VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"


def build_color_images(spec: ColorImageSpec) -> list[Dataset]:
    """Build the instances of a series of RGB photographs (one per image of ``spec.pixels``).

    Raises
    ------
    TypeError
        When ``spec`` is not a ColorImageSpec.
    ValueError
        When the series is not a VL Photographic Image Storage series.
    """
    if not isinstance(spec, ColorImageSpec):
        raise TypeError(f'Argument "spec" must be a ColorImageSpec, not {type(spec).__name__}.')
    study, series = spec.study, spec.series
    common.check_contexts(study, series)
    if series.sop_class_uid != VL_PHOTOGRAPHIC_IMAGE_STORAGE:
        raise ValueError('Argument "spec" must describe a VL Photographic Image Storage series.')
    base = Dataset()
    common.add_sop_common_module(base, study, series.sop_class_uid, series.sop_instance_uids[0])
    common.add_patient_study_modules(base, study)
    common.add_clinical_trial_modules(base, study, series)
    common.add_general_series_module(base, study, series)
    del base.PatientPosition  # not part of a photograph's General Series
    common.add_general_equipment_module(base, study.target)
    # General Acquisition (C.7.10.1)
    base.AcquisitionNumber = 1
    base.AcquisitionDateTime = series.series_date + series.series_time
    # General Image (C.7.6.1) and VL Image (C.8.12.1)
    base.ContentDate = series.series_date
    base.ContentTime = series.series_time
    base.ImageType = ["ORIGINAL", "PRIMARY"]
    base.PatientOrientation = ""
    base.ImageLaterality = spec.laterality
    base.BurnedInAnnotation = "NO"
    base.LossyImageCompression = "00"
    base.ImageComments = "Synthetic image: fabricated by SynthPACS, no real patient"
    if spec.anatomic_region is not None:
        region = Dataset()
        region.CodeValue = spec.anatomic_region.value
        region.CodingSchemeDesignator = spec.anatomic_region.scheme_designator
        region.CodeMeaning = spec.anatomic_region.meaning
        base.AnatomicRegionSequence = [region]
    # Acquisition Context (C.7.6.14): nothing to say, but the sequence is Type 2.
    base.AcquisitionContextSequence = []
    # Image Pixel (C.7.6.3)
    base.SamplesPerPixel = 3
    base.PhotometricInterpretation = "RGB"
    base.PlanarConfiguration = 0
    base.BitsAllocated = 8
    base.BitsStored = 8
    base.HighBit = 7
    base.PixelRepresentation = 0
    out = []
    for i, image in enumerate(spec.pixels):
        ds = copy.deepcopy(base)
        uid = series.sop_instance_uids[i]
        ds.file_meta = common.file_meta(series.sop_class_uid, uid, ExplicitVRLittleEndian)
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
        ds.PixelData = np.ascontiguousarray(image).tobytes()
        out.append(ds)
    return out
