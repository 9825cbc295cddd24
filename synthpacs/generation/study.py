"""One synthetic study, end to end: target pixels -> IOD builders -> datasets."""

from __future__ import annotations

from pydicom import Dataset

from ..archive.universe import StudyRecord, Universe
from ..imaging.ct import build_ct_series
from ..imaging.seg import build_segmentation
from ..imaging.sr import build_measurement_report
from .base import Target


def build_study(universe: Universe, study: StudyRecord, target: Target) -> dict[str, list[Dataset]]:
    """Every instance of ``study``, by series instance UID, in instance order."""
    made = target.render_study(universe, study)
    by_kind = {s.plan.kind: s for s in study.series}
    ct_series = by_kind["image"]
    ct = build_ct_series(study, ct_series, universe.uids, made.pixels, made.grid)
    out = {ct_series.series_instance_uid: ct}
    findings = [f.as_dict() for f in made.findings]
    if "segmentation" in by_kind:
        seg_series = by_kind["segmentation"]
        out[seg_series.series_instance_uid] = [build_segmentation(study, seg_series, universe.uids, ct, made.labels, findings)]
    if "measurements" in by_kind:
        sr_series = by_kind["measurements"]
        out[sr_series.series_instance_uid] = [build_measurement_report(study, sr_series, universe.uids, ct, findings)]
    return out
