"""Digital Mammography X-Ray Image Storage - For Presentation (PS3.3 A.27), with pydicom.

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
Mammography Series             C.8.11.6    M
General Equipment              C.7.5.1     M
General Acquisition            C.7.10.1    M
General Image                  C.7.6.1     M
Image Pixel                    C.7.6.3     M
Acquisition Context            C.7.6.14    M
DX Anatomy Imaged              C.8.11.2    M
DX Image                       C.8.11.3    M
DX Detector                    C.8.11.4    M
X-Ray Acquisition Dose         C.8.7.8     U
X-Ray Generation               C.8.7.9     U
X-Ray Filtration               C.8.7.10    U
Mammography Image              C.8.11.7    M
VOI LUT                        C.11.2      C
SOP Common                     C.12.1      M
=============================  ==========  =====

One instance per view, MONOCHROME2 (bright = dense, as radiologists read
them), unsigned, Presentation LUT Shape IDENTITY, a VOI window for the
processed image.
"""

from __future__ import annotations

import copy

import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from . import common
from .spec import MammographySpec

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
BREAST = Code("76752008", "SCT", "Breast")
#: CID 4014 View for Mammography.
VIEW_CODES = {
    "CC": Code("399162004", "SCT", "cranio-caudal"),
    "MLO": Code("399368009", "SCT", "medio-lateral oblique"),
    "ML": Code("399260004", "SCT", "medio-lateral"),
    "LM": Code("399352003", "SCT", "latero-medial"),
    "XCCL": Code("399192008", "SCT", "cranio-caudal exaggerated laterally"),
}
#: Patient Orientation (row, column directions) of each view as displayed, by laterality (PS3.3 C.8.11.7.1).
SOURCE_TO_DETECTOR_MM, SOURCE_TO_BREAST_MM = 650.0, 630.0
MAGNIFICATION = SOURCE_TO_DETECTOR_MM / SOURCE_TO_BREAST_MM
ORIENTATION = {("CC", "L"): ["A", "R"], ("CC", "R"): ["P", "L"], ("MLO", "L"): ["A", "FR"], ("MLO", "R"): ["P", "FL"]}


def _code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def build_mammograms(spec: MammographySpec) -> list[Dataset]:
    """Build one instance per view.

    Raises
    ------
    TypeError
        When ``spec`` is not a MammographySpec.
    ValueError
        When the series is not a For Presentation digital mammography series of modality MG.
    """
    if not isinstance(spec, MammographySpec):
        raise TypeError(f'Argument "spec" must be a MammographySpec, not {type(spec).__name__}.')
    study, series = spec.study, spec.series
    common.check_contexts(study, series)
    if series.sop_class_uid != DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION or series.modality != "MG":
        raise ValueError('Argument "spec" must describe a Digital Mammography For Presentation series of modality MG.')
    base = Dataset()
    common.add_sop_common_module(base, study, series.sop_class_uid, series.sop_instance_uids[0])
    common.add_patient_study_modules(base, study)
    common.add_clinical_trial_modules(base, study, series)
    common.add_general_series_module(base, study, series)
    del base.PatientPosition  # not used for mammography (C.7.3.1.1.2: DX/MG use View Position)
    common.add_general_equipment_module(base, study.target)
    # Mammography Series (C.8.11.6) / DX Series (C.8.11.1)
    base.PresentationIntentType = "FOR PRESENTATION"
    # General Acquisition (C.7.10.1)
    base.AcquisitionDateTime = series.series_date + series.series_time
    # General Image (C.7.6.1)
    base.ContentDate = series.series_date
    base.ContentTime = series.series_time
    base.AcquisitionDate = series.series_date
    base.AcquisitionTime = series.series_time
    base.BurnedInAnnotation = "NO"
    base.LossyImageCompression = "00"
    base.ImageComments = "Synthetic image: fabricated by SynthPACS, no real patient"
    base.QualityControlImage = "NO"
    # Acquisition Context (C.7.6.14)
    base.AcquisitionContextSequence = []
    # Image Pixel (C.7.6.3)
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.BitsAllocated = 16
    base.BitsStored = spec.bits_stored
    base.HighBit = spec.bits_stored - 1
    base.PixelRepresentation = 0
    # DX Image (C.8.11.3)
    base.ImageType = ["ORIGINAL", "PRIMARY", ""]
    base.PixelIntensityRelationship = "LOG"
    base.PixelIntensityRelationshipSign = 1  # higher values: more attenuation (brighter)
    base.RescaleIntercept = "0"
    base.RescaleSlope = "1"
    base.RescaleType = "US"
    base.PresentationLUTShape = "IDENTITY"
    # DX Detector (C.8.11.4)
    base.DetectorType = "DIRECT"
    base.DetectorConfiguration = "AREA"
    base.DetectorBinning = [1, 1]
    base.DetectorConditionsNominalFlag = "YES"
    # X-Ray Generation / Filtration (C.8.7.9, C.8.7.10), Mammography Image (C.8.11.7)
    base.PositionerType = "MAMMOGRAPHIC"
    base.OrganExposed = "BREAST"
    base.AnatomicRegionSequence = [_code(BREAST)]
    base.PartialView = "NO"
    base.DistanceSourceToDetector = f"{SOURCE_TO_DETECTOR_MM:g}"
    base.DistanceSourceToPatient = f"{SOURCE_TO_BREAST_MM:g}"
    base.EstimatedRadiographicMagnificationFactor = f"{MAGNIFICATION:.4f}"
    base.Grid = ["NONE"]
    out = []
    for i, (image, view) in enumerate(zip(spec.pixels, spec.views), start=spec.first_instance):
        ds = copy.deepcopy(base)
        uid = series.sop_instance_uids[i]
        ds.file_meta = common.file_meta(series.sop_class_uid, uid, ExplicitVRLittleEndian)
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        ds.AcquisitionNumber = i + 1
        ds.ImageLaterality = view.laterality
        ds.ViewPosition = view.view  # CC / MLO, as mammography units write it (hanging protocols read it)
        ds.PatientOrientation = ORIENTATION.get(
            (view.view, view.laterality), ["A", "R"] if view.laterality == "L" else ["P", "L"]
        )
        ds.ViewCodeSequence = [_code(VIEW_CODES[view.view])]
        ds.ViewCodeSequence[0].ViewModifierCodeSequence = []  # Type 2 in the Mammography Image module
        ds.BreastImplantPresent = "YES" if view.implant else "NO"
        imager = f"{view.pixel_spacing_mm * MAGNIFICATION:.5f}"
        ds.ImagerPixelSpacing = [imager, imager]
        ds.PixelSpacing = [f"{view.pixel_spacing_mm:g}", f"{view.pixel_spacing_mm:g}"]  # at the breast
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "Imager spacing / estimated magnification"
        ds.KVP = f"{view.kvp:g}"
        ds.Exposure = int(round(view.exposure_mas))
        ds.ExposureInuAs = int(round(view.exposure_mas * 1000))
        ds.BodyPartThickness = f"{view.thickness_mm:g}"
        ds.CompressionForce = f"{view.compression_force_n:g}"
        ds.OrganDose = f"{view.organ_dose_dgy:.4f}"
        ds.EntranceDoseInmGy = f"{view.entrance_dose_mgy:.2f}"
        ds.AnodeTargetMaterial = view.anode
        ds.FilterMaterial = [view.filter]
        ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
        if spec.window is not None:
            # A linear window (cornerstone3D, OHIF's renderer, refuses VOI LUT Function SIGMOID: "Invalid VOI LUT function").
            ds.WindowCenter, ds.WindowWidth = f"{spec.window[0]:g}", f"{spec.window[1]:g}"
        ds.PixelData = np.ascontiguousarray(image, dtype="<u2").tobytes()
        out.append(ds)
    return out
