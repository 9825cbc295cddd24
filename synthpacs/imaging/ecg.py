"""12-lead ECG Waveform Storage (PS3.3 A.34.3), with pydicom.

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
Waveform Identification        C.10.8      M
Waveform                       C.10.9      M
Acquisition Context            C.7.6.14    M
Waveform Annotation            C.10.10     C (measured intervals)
SOP Common                     C.12.1      M
=============================  ==========  =====

Samples are signed 16-bit (SS) with a sensitivity of 1 µV per unit, one
multiplex group holding every lead (A.34.3.4: 1-13 channels, 200-1000 Hz,
at most 16384 samples, leads from CID 3001).
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from . import common
from .spec import WaveformAnnotation, WaveformSpec

TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
MICROVOLT = Code("uV", "UCUM", "microvolt")
MILLISECOND = Code("ms", "UCUM", "millisecond")
MAX_SAMPLES = 16384


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    if code.scheme_version:
        item.CodingSchemeVersion = code.scheme_version
    item.CodeMeaning = code.meaning
    return item


def _channel(lead: Code, bits_stored: int, spec: WaveformSpec) -> Dataset:
    channel = Dataset()
    channel.ChannelSourceSequence = [_code_item(lead)]
    channel.ChannelSensitivity = "1"
    channel.ChannelSensitivityUnitsSequence = [_code_item(MICROVOLT)]
    channel.ChannelSensitivityCorrectionFactor = "1"
    channel.ChannelBaseline = "0"
    channel.ChannelTimeSkew = "0"
    channel.WaveformBitsStored = bits_stored
    channel.FilterLowFrequency = f"{spec.filter_low_hz:g}"
    channel.FilterHighFrequency = f"{spec.filter_high_hz:g}"
    channel.NotchFilterFrequency = f"{spec.notch_hz:g}"
    return channel


def _annotation(annotation: WaveformAnnotation) -> Dataset:
    item = Dataset()
    if annotation.text is not None:
        item.UnformattedTextValue = annotation.text
    if annotation.concept is not None:
        item.ConceptNameCodeSequence = [_code_item(annotation.concept)]
    if annotation.value is not None and annotation.unit is not None:
        item.NumericValue = f"{float(annotation.value):g}"
        item.MeasurementUnitsCodeSequence = [_code_item(annotation.unit)]
    if annotation.sample_position is not None:  # a fiducial point: one sample (C.10.10.1.2)
        item.TemporalRangeType = "POINT"
        item.ReferencedSamplePositions = [int(annotation.sample_position)]
    item.AnnotationGroupNumber = 1
    # A global annotation: channel 0 of multiplex group 1 means all its channels (C.10.10.1.1).
    item.ReferencedWaveformChannels = [1, 0]
    return item


def build_ecg(spec: WaveformSpec) -> Dataset:
    """Build one 12-lead ECG instance from a waveform spec.

    Raises
    ------
    TypeError
        When ``spec`` is not a WaveformSpec.
    ValueError
        When the series is not a 12-lead ECG series, the samples exceed
        16384 per lead or do not fit 16 bits.
    """
    if not isinstance(spec, WaveformSpec):
        raise TypeError(f'Argument "spec" must be a WaveformSpec, not {type(spec).__name__}.')
    study, series = spec.study, spec.series
    common.check_contexts(study, series)
    if series.sop_class_uid != TWELVE_LEAD_ECG_STORAGE or series.modality != "ECG":
        raise ValueError('Argument "spec" must describe a 12-lead ECG Waveform Storage series of modality ECG.')
    if not 200 <= spec.sampling_frequency_hz <= 1000:
        raise ValueError('"sampling_frequency_hz" must lie in 200..1000 Hz for a 12-lead ECG (PS3.3 A.34.3.4).')
    samples = np.rint(np.asarray(spec.samples, dtype=np.float64))
    if samples.shape[1] > MAX_SAMPLES:
        raise ValueError(f'"samples" holds {samples.shape[1]} samples per lead; a 12-lead ECG holds at most {MAX_SAMPLES}.')
    if samples.size and (samples.min() < -32768 or samples.max() > 32767):
        raise ValueError('"samples" do not fit signed 16-bit values at 1 uV per unit.')

    uid = series.sop_instance_uids[0]
    ds = Dataset()
    ds.file_meta = common.file_meta(series.sop_class_uid, uid, ExplicitVRLittleEndian)
    common.add_sop_common_module(ds, study, series.sop_class_uid, uid)
    common.add_patient_study_modules(ds, study)
    common.add_clinical_trial_modules(ds, study, series)
    common.add_general_series_module(ds, study, series)
    del ds.PatientPosition  # no imaging position for a resting ECG
    common.add_general_equipment_module(ds, study.target)
    # Waveform Identification (C.10.8)
    ds.InstanceNumber = 1
    ds.ContentDate = series.series_date
    ds.ContentTime = series.series_time
    ds.AcquisitionDateTime = series.series_date + series.series_time
    # Acquisition Context (C.7.6.14)
    ds.AcquisitionContextSequence = []
    # Waveform (C.10.9): one multiplex group, channel-interleaved samples.
    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(spec.leads)
    group.NumberOfWaveformSamples = int(samples.shape[1])
    group.SamplingFrequency = f"{spec.sampling_frequency_hz:g}"
    group.MultiplexGroupLabel = "RHYTHM"
    group.ChannelDefinitionSequence = [_channel(lead, 16, spec) for lead in spec.leads]
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformData = samples.T.astype("<i2").tobytes()
    ds.WaveformSequence = [group]
    # Waveform Annotation (C.10.10): the global intervals a reader measures.
    intervals = (WaveformAnnotation(concept, value, MILLISECOND) for concept, value in spec.intervals_ms)
    annotations = [_annotation(a) for a in (*intervals, *spec.annotations)]
    if annotations:
        ds.WaveformAnnotationSequence = annotations
    return ds
