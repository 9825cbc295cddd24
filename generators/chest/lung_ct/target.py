"""The lung-cancer chest CT target: geometry, then the teacher renderer.

Randomness comes from keyed paths (DESIGN §2.1): the anatomy and the lesion
sites from the patient's path, so every visit shows the same chest; the
rendering noise from the study's path.
"""

from __future__ import annotations

from synthpacs.archive import keyed
from synthpacs.archive.universe import StudyRecord, Universe
from synthpacs.generation.base import Finding, StudyPixels

from .geometry import CTGrid, draw_anatomy, label_volume, lesion_measurement, place_lesions
from .teacher import render_hu

NAME = "chest/lung-ct"


def study_grid(study: StudyRecord) -> CTGrid:
    p = study.patient
    return CTGrid(rows=p.cohort.rows, columns=p.cohort.columns, n_slices=p.n_slices,
                  pixel_spacing_mm=p.pixel_spacing_mm, slice_spacing_mm=p.slice_thickness_mm)


def study_geometry(universe: Universe, study: StudyRecord):
    """The label volume, grid and lesion findings of one study (no pixels yet)."""
    p = study.patient
    grid = study_grid(study)
    anatomy = draw_anatomy(keyed.path_rng(universe.key, "patient", p.index, "anatomy"), grid, p.sex)
    sites = place_lesions(anatomy, grid, p.n_lesions, keyed.path_rng(universe.key, "patient", p.index, "lesions"))
    labels = label_volume(anatomy, grid, list(zip(sites, study.lesion_diameters_mm)))
    findings = []
    for i, site in enumerate(sites):
        measured = lesion_measurement(labels, grid, i)
        findings.append(Finding(
            tracking_id=f"Lesion {i + 1}",
            tracking_uid=universe.uids.tracking_uid(p.index, i),
            diameter_mm=round(measured["diameter_mm"], 1) if measured else 0.0,
            lung=site.lung,
            lobe=site.lobe,
            slice=measured["slice"] if measured else None,
            points=[tuple(map(float, pt)) for pt in measured["points"]] if measured else None,
        ))
    return labels, grid, findings


class TeacherLungCT:
    """Geometry stage + physics-informed renderer (the GAN's teacher)."""

    name = NAME

    def render_study(self, universe: Universe, study: StudyRecord) -> StudyPixels:
        labels, grid, findings = study_geometry(universe, study)
        rng = keyed.path_rng(universe.key, "study", study.patient.index, study.visit, "render")
        return StudyPixels(pixels=render_hu(labels, grid, rng), labels=labels, grid=grid, findings=findings)
