"""The seed's interface beside the DICOM: DeepFake ECG's text files, a measurements table, latent walks as charts.

``synthpacs generate --target heart/ecg -n 5 --out DIR`` writes, for each
study, its DICOM (and JPEG chart), ``<id>.asc`` (DeepFake ECG's format:
5000 rows of 8 integers, leads I, II, V1-V6, microvolts, ids counted from
``--start-id``) and one row of ``measurements.csv``. ``--interpolate A,B``
walks the straight line between the noises of samples A and B and draws
each step as the standard chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .leads import NETWORK_LEADS, SAMPLING_HZ, twelve_leads
from .plan import TWELVE_LEAD_ECG


class ECGFiles:
    """Exportable: ``<number>.asc`` and the study's measurements row."""

    def write(self, datasets: Sequence[Any], out: Path, number: int) -> Mapping[str, Any]:
        from synthpacs.imaging.ecg_chart import leads_of

        from .records import write_asc

        for ds in datasets:
            if str(ds.SOPClassUID) != TWELVE_LEAD_ECG:
                continue
            leads, hz = leads_of(ds)
            t_in, t_out = np.arange(len(leads["I"])) / hz, np.arange(int(10 * SAMPLING_HZ)) / SAMPLING_HZ
            eight = np.stack([np.interp(t_out, t_in, leads[name] * 1000.0) for name in NETWORK_LEADS])
            write_asc(out / f"{number}.asc", eight)
            row: dict[str, Any] = {
                "id": number,
                "patient_id": str(ds.PatientID),
                "subject_id": str(ds.get("ClinicalTrialSubjectID", "")),
                "time_point": str(ds.get("ClinicalTrialTimePointID", "")),
                "study_instance_uid": str(ds.StudyInstanceUID),
                "acquisition_datetime": str(ds.get("AcquisitionDateTime", "")),
            }
            for item in ds.get("WaveformAnnotationSequence", []):
                if "NumericValue" in item and "ConceptNameCodeSequence" in item:
                    row[_column(str(item.ConceptNameCodeSequence[0].CodeMeaning))] = float(item.NumericValue)
                elif "UnformattedTextValue" in item and str(item.UnformattedTextValue).startswith(("Sinus", "Atrial")):
                    row["statement"] = str(item.UnformattedTextValue)
            return row
        return {}


def _column(meaning: str) -> str:
    return {
        "Heart rate": "heart_rate_bpm",
        "RR Interval": "rr_ms",
        "PR Interval": "pr_ms",
        "QRS Duration": "qrs_ms",
        "QT Interval": "qt_ms",
        "QTc Interval": "qtcf_ms",
    }.get(meaning, meaning.lower().replace(" ", "_"))


class LatentWalk:
    """Interpolable: charts of raw samples along the line between two samples' noises."""

    @property
    def display_windows(self) -> Mapping[str, tuple[float, float]]:
        return {}  # the frames are drawn charts, not values to window

    def interpolation_frames(self, generator, request, seed_a: int, seed_b: int, frames: int, **options: Any) -> list[np.ndarray]:
        from synthpacs.imaging.ecg_chart import draw_chart

        from .leads import LEADS
        from .target import interpolate

        out = []
        for i, eight in enumerate(interpolate(seed_a, seed_b, frames, generator)):
            twelve = twelve_leads(eight)
            leads = {name: twelve[k] / 1000.0 for k, name in enumerate(LEADS)}
            title = f"DeepFake ECG latent walk: sample {seed_a} -> {seed_b}, frame {i + 1} of {frames}"
            out.append(np.asarray(draw_chart(leads, SAMPLING_HZ, title=title, filters="raw GAN output")))
        return out
