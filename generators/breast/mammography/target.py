"""The breast/mammography generator: a patient's breasts -> four views, a SEG per view, a TID 1500 report.

The geometry stage (:mod:`.geometry`) is drawn from patient-keyed draws, so
the same breasts and findings appear at every visit; this visit's mass sizes
come from the subject's course (the universe's lesion diameters). The
photorealism stage is the physics-informed teacher (:mod:`.teacher`).
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from synthpacs.generation.contract import GeneratorOptions, Part, StudyRequest
from synthpacs.imaging.spec import (
    CodedEvaluation,
    IODSpec,
    LinearMeasurement,
    MammogramView,
    MammographySpec,
    MeasurementReportSpec,
    QualitativeFinding,
    Quantity,
    Segment,
    SegmentationSpec,
)

from .geometry import (
    Calcifications,
    Distortion,
    Patient,
    at_visit,
    calcification_points,
    distortion_spokes,
    draw_patient,
    mass_centre,
    view_geometry,
)
from .teacher import CALCIFICATION_LABEL, DISTORTION_LABEL, render_view

VERSION = 6  # bump when the same request would give other bytes (2: calcification morphologies, distortion; 3: clusters measured; 4: texture centred on the breast; 5: distortions measured; 6: spokes bent)
LATERALITY = {"R": Code("24028007", "SCT", "Right"), "L": Code("7771000", "SCT", "Left")}
BREAST = Code("76752008", "SCT", "Breast")
CALCIFICATION = Code("129748009", "SCT", "Calcification cluster")
DISTORTION = codes.SCT.ArchitecturalDistortionOfBreast
CALCIFICATION_TYPE = codes.DCM.CalcificationType
CALCIFICATION_DISTRIBUTION = codes.DCM.CalcificationDistribution
CLOCKFACE = codes.DCM.ClockfaceOrRegion
MORPHOLOGY_CODES = {
    "punctate": codes.SCT.PunctateCalcification,
    "amorphous": codes.SCT.AmorphousCalcification,
    "coarse heterogeneous": codes.SCT.HeterogeneousCalcification,
    "fine pleomorphic": codes.DCM.FinePleomorphicCalcification,
    "fine linear branching": codes.SCT.FineLinearBranchingCastingCalcification,
}
DISTRIBUTION_CODES = {
    "grouped": codes.SCT.GroupedCalcificationDistribution,
    "linear": codes.SCT.LinearCalcificationDistribution,
    "segmental": codes.SCT.SegmentalCalcificationDistribution,
    "regional": codes.SCT.RegionalCalcificationDistribution,
}
#: BI-RADS assessment categories with the meanings of CID 6026 (the SNOMED names exceed the 64
#: characters of a Code Meaning).
ASSESSMENT_CODES = {
    1: Code("397140005", "SCT", "Negative"),
    2: Code("397141009", "SCT", "Benign"),
    3: Code("397143007", "SCT", "Probably benign"),
    4: Code("397144001", "SCT", "Suspicious abnormality"),
    5: Code("397145000", "SCT", "Highly suggestive of malignancy"),
    6: Code("111125", "DCM", "Known biopsy proven malignancy"),
}
#: BI-RADS breast composition (CID 6000 meanings), by density class.
COMPOSITION_CODES = {
    "A": Code("129716005", "SCT", "Almost entirely fatty"),
    "B": Code("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": Code("129718006", "SCT", "Heterogeneously dense"),
    "D": Code("129719003", "SCT", "Extremely dense"),
}
#: BI-RADS category a finding alone suggests (5th edition): suspicious morphologies 4, fine linear
#: branching 5 (4C/5 in the atlas), punctate probably benign (benign when regional).
CALCIFICATION_BIRADS = {"amorphous": 4, "coarse heterogeneous": 4, "fine pleomorphic": 4, "fine linear branching": 5}
DENSITY_TEXT = {
    "A": "almost entirely fatty",
    "B": "scattered fibroglandular",
    "C": "heterogeneously dense",
    "D": "extremely dense",
}


def fingerprint(options: GeneratorOptions) -> str:
    return f"mammography-teacher-v{VERSION}"


class MammographyGenerator:
    """The loaded target (contract.Generator); a study is made view by view through :meth:`open`."""

    fingerprint = fingerprint(GeneratorOptions())

    def patient(self, request: StudyRequest) -> Patient:
        acq = request.acquisition
        base = draw_patient(
            request.draws.rng("mammography"),
            acq.density,
            acq.calcification_share,
            len(request.lesion_diameters_mm),
            acq.distortion_share,
        )
        return at_visit(base, request.lesion_diameters_mm, request.visit, request.draws.study_rng("mammography"))

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        """The whole study: four views, their SEGs and the report."""
        work = self.open(request)
        image, seg, sr = (request.by_role(r) for r in ("image", "segmentation", "measurements"))
        assert image is not None and seg is not None and sr is not None
        views = [
            spec
            for i in range(len(request.acquisition.view_list))
            for spec in work.make(Part(image.index, i, i + 1))
            if isinstance(spec, MammographySpec)
        ]
        whole = MammographySpec(
            study=request.study,
            series=image.context,
            pixels=tuple(p for v in views for p in v.pixels),
            views=tuple(x for v in views for x in v.views),
            bits_stored=request.acquisition.bits_stored,
            window=_window(request),
        )
        segs = [s for i in range(len(request.acquisition.view_list)) for s in work.make(Part(seg.index, i, i + 1))]
        return [whole, *segs, *work.make(Part(sr.index, 0, 1))]

    def open(self, request: StudyRequest) -> MammographyWork:
        """The study view by view: the first view, the report, then each view's SEG after its view."""
        return MammographyWork(self, request)


class MammographyWork:
    """One mammography study in parts (contract.StudyWork): the breasts are drawn once; each view is
    rendered when its image or its SEG is first asked for, and kept until the study closes."""

    def __init__(self, generator: MammographyGenerator, request: StudyRequest):
        self._generator, self._request = generator, request
        self._patient: Patient | None = None
        self._views: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        image, seg, sr = (request.by_role(r) for r in ("image", "segmentation", "measurements"))
        assert image is not None and seg is not None and sr is not None
        self._image, self._seg, self._sr = image, seg, sr
        parts = [Part(image.index, 0, 1), Part(sr.index, 0, 1), Part(seg.index, 0, 1)]
        self._views_of = request.acquisition.view_list
        for i in range(1, len(self._views_of)):
            parts += [Part(image.index, i, i + 1), Part(seg.index, i, i + 1)]
        self.parts = tuple(parts)

    @property
    def patient(self) -> Patient:
        if self._patient is None:
            self._patient = self._generator.patient(self._request)
        return self._patient

    def _view(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._views:
            acq, (laterality, view) = self._request.acquisition, self._views_of[i]
            pixels, labels, _, _ = render_view(
                self.patient,
                laterality,
                view,
                acq.rows,
                acq.columns,
                acq.pixel_spacing_mm,
                acq.bits_stored,
                self._request.draws.study_rng("view", i),
            )
            self._views[i] = (pixels, labels)
        return self._views[i]

    def make(self, part: Part) -> list[IODSpec]:
        request, specs = self._request, list[IODSpec]()
        for i in range(part.start, part.stop):
            if part.series_index == self._image.index:
                pixels, _ = self._view(i)
                specs.append(self._image_spec(i, (pixels,)))
            elif part.series_index == self._seg.index:
                specs.append(self._seg_spec(i))
            else:
                specs.append(_report(request, self.patient, self._sr.context, self._image.context.series_instance_uid))
        return specs

    def _image_spec(self, first: int, pixels: tuple[np.ndarray, ...]) -> MammographySpec:
        request = self._request
        views = tuple(_view(request, self.patient, *self._views_of[first + k]) for k in range(len(pixels)))
        return MammographySpec(
            study=request.study,
            series=self._image.context,
            pixels=pixels,
            views=views,
            bits_stored=request.acquisition.bits_stored,
            window=_window(request),
            first_instance=first,
        )

    def _seg_spec(self, i: int) -> SegmentationSpec:
        request = self._request
        pixels, labels = self._view(i)
        laterality = self._views_of[i][0]
        segments = _segments(request, self.patient, laterality, np.unique(labels))
        frame = labels
        if not segments:  # a view without findings: the breast as its segment keeps one SEG per view
            segments = (_breast_segment(request, laterality),)
            frame = (pixels > 0).astype(np.uint8) * 255
        return SegmentationSpec(
            study=request.study,
            series=self._seg.context,
            source_series_uid=self._image.context.series_instance_uid,
            labels=frame[None],
            segments=segments,
            source_instances=(i,),
            instance_index=i,
        )

    def headers(self, series_index: int) -> list[IODSpec]:
        if series_index != self._image.index:
            return self.make(next(p for p in self.parts if p.series_index == series_index))
        acq = self._request.acquisition
        placeholder = np.zeros((acq.rows, acq.columns), np.uint16)  # no attribute depends on the pixels
        return [self._image_spec(0, (placeholder,) * len(self._views_of))]

    def close(self) -> None:
        self._patient, self._views = None, {}


def _window(request: StudyRequest) -> tuple[float, float]:
    top = 1 << request.acquisition.bits_stored
    return top * 0.5, top * 0.9


def _view(request: StudyRequest, patient: Patient, laterality: str, view: str) -> MammogramView:
    breast = patient.breasts[laterality]
    draw = request.draws.study_rng("exposure", laterality, view)
    thickness = breast.thickness_mm * (1.05 if view == "MLO" else 1.0)
    kvp = round(25 + 0.16 * thickness + draw.uniform(-1, 1))
    mas = float(np.clip(40 + 2.0 * thickness + draw.normal(0, 10), 30, 300))
    return MammogramView(
        laterality=laterality,
        view=view,
        pixel_spacing_mm=request.acquisition.pixel_spacing_mm,
        kvp=kvp,
        exposure_mas=mas,
        compression_force_n=float(np.clip(draw.normal(110, 20), 50, 200)),
        thickness_mm=round(thickness, 1),
        organ_dose_dgy=round(0.0012 * thickness * (1 + draw.normal(0, 0.1)), 4),
        entrance_dose_mgy=round(0.12 * mas * (kvp / 28) ** 2 / 10, 2),
        implant=patient.implant,
    )


def _segments(request: StudyRequest, patient: Patient, laterality: str, present: np.ndarray) -> tuple[Segment, ...]:
    out = []
    for value in (int(v) for v in present if v):
        if value >= DISTORTION_LABEL:
            k = value - DISTORTION_LABEL
            out.append(
                Segment(
                    label_value=value,
                    label=f"Distortion {k + 1}",
                    tracking_id=f"Architectural distortion {k + 1}",
                    tracking_uid=request.draws.tracking_uid(70 + k),
                    category=codes.cid7150.MorphologicallyAbnormalStructure,
                    property_type=DISTORTION,
                    anatomic_region=BREAST,
                    laterality=LATERALITY[laterality],
                    description="architectural distortion, no central mass",
                )
            )
        elif value >= CALCIFICATION_LABEL:
            k = value - CALCIFICATION_LABEL
            cluster = patient.calcifications[k]
            out.append(
                Segment(
                    label_value=value,
                    label=f"Calcifications {k + 1}",
                    tracking_id=f"Calcification cluster {k + 1}",
                    tracking_uid=request.draws.tracking_uid(50 + k),
                    category=codes.cid7150.MorphologicallyAbnormalStructure,
                    property_type=CALCIFICATION,
                    anatomic_region=BREAST,
                    laterality=LATERALITY[laterality],
                    description=f"{cluster.morphology} calcifications, {cluster.distribution} distribution",
                )
            )
        else:
            mass = patient.masses[value - 1]
            out.append(
                Segment(
                    label_value=value,
                    label=f"Mass {mass.index + 1}",
                    tracking_id=f"Lesion {mass.index + 1}",
                    tracking_uid=request.draws.tracking_uid(mass.index),
                    category=codes.cid7150.MorphologicallyAbnormalStructure,
                    property_type=codes.SCT.Mass,
                    anatomic_region=BREAST,
                    laterality=LATERALITY[laterality],
                    description=f"{mass.shape} mass, {mass.margin} margin",
                )
            )
    return tuple(out)


def _breast_segment(request: StudyRequest, laterality: str) -> Segment:
    return Segment(
        label_value=255,
        label="Breast",
        tracking_id=f"Breast {laterality}",
        tracking_uid=request.draws.tracking_uid(90 + (laterality == "L")),
        category=codes.cid7150.Tissue,
        property_type=BREAST,
        anatomic_region=BREAST,
        laterality=LATERALITY[laterality],
        description="No lesion in this view: the breast",
    )


def clock_code(hour: int) -> Code:
    """The SNOMED code of a clock-face position (1 to 12 o'clock)."""
    return getattr(codes.SCT, f"_{hour}OClockPosition")


def distance_from_nipple_mm(position: tuple[float, float, float], breast) -> float:
    """How far a 3-D point lies from the nipple, in mm of the compressed breast (the depth readers give)."""
    x, y, z = position
    return math.dist(
        ((1 - x) * breast.depth_mm, y * breast.half_width_mm, (z - breast.nipple_z) * breast.half_width_mm), (0, 0, 0)
    )


def clock_position(position: tuple[float, float, float], laterality: str) -> int:
    """The clock-face position of a point, as a reader faces the patient (12: superior)."""
    _, y, z = position
    angle = math.degrees(math.atan2(y if laterality == "L" else -y, z)) % 360  # lateral is 3 o'clock for the left breast
    return int(round(angle / 30)) % 12 or 12


def breast_birads(masses, calcifications, distortions) -> int:
    """One breast's BI-RADS assessment: the most suspicious of its findings (6: the index cancer, known
    from biopsy; any other mass or a distortion 4; calcifications by morphology; nothing 1)."""
    categories = [6 if m.index == 0 else 4 for m in masses] + [4 for _ in distortions]
    for c in calcifications:
        categories.append(CALCIFICATION_BIRADS.get(c.morphology, 2 if c.distribution == "regional" else 3))
    return max(categories, default=1)


Line = tuple[tuple[float, float], tuple[float, float]]


def _farthest_pair(points: np.ndarray) -> tuple[int, int, float]:
    """The two of (n, 2) points farthest apart and their distance (pixels)."""
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    a, b = divmod(int(np.argmax(d2)), len(points))
    return a, b, math.sqrt(float(d2[a, b]))


def _line(points: np.ndarray, a: int, b: int) -> Line:
    return (float(points[a, 0]), float(points[a, 1])), (float(points[b, 0]), float(points[b, 1]))


def cluster_extent(c: Calcifications, patient: Patient, acq) -> tuple[float, Line]:
    """A calcification cluster's extent on its CC view, as a reader measures it: the distance between
    the two calcifications farthest apart (mm, outer edges included), and those two (row, column)."""
    breast = patient.breasts[c.laterality]
    points = calcification_points(c, view_geometry(breast, "CC", acq.rows, acq.columns, acq.pixel_spacing_mm), breast)
    a, b, apart = _farthest_pair(points)
    return round(apart * acq.pixel_spacing_mm + (float(c.sizes_mm[a]) + float(c.sizes_mm[b])) / 2, 1), _line(points, a, b)


def distortion_extent(d: Distortion, patient: Patient, acq) -> tuple[float, Line]:
    """An architectural distortion's extent on its CC view: the two spoke ends farthest apart (mm)
    and those two (row, column)."""
    breast = patient.breasts[d.laterality]
    _, tips = distortion_spokes(d, view_geometry(breast, "CC", acq.rows, acq.columns, acq.pixel_spacing_mm), breast)
    a, b, apart = _farthest_pair(tips)
    return round(apart * acq.pixel_spacing_mm, 1), _line(tips, a, b)


def _report(request: StudyRequest, patient: Patient, context, source_uid: str) -> MeasurementReportSpec:
    """Each mass measured on its CC view (where the geometry puts it), density and BI-RADS per breast; no pixels needed."""
    acq = request.acquisition
    measurements = []
    for mass in patient.masses:
        frame = acq.view_list.index((mass.laterality, "CC"))
        centre = mass_centre(
            mass, view_geometry(patient.breasts[mass.laterality], "CC", acq.rows, acq.columns, acq.pixel_spacing_mm)
        )
        radius = mass.diameter_mm / 2 / acq.pixel_spacing_mm
        if mass.diameter_mm <= 0:
            points, frame_index = None, None
        else:
            dr, dc = math.sin(mass.angle) * radius, math.cos(mass.angle) * radius
            points = ((centre[0] - dr, centre[1] - dc), (centre[0] + dr, centre[1] + dc))
            frame_index = frame
        measurements.append(
            LinearMeasurement(
                tracking_id=f"Lesion {mass.index + 1}",
                tracking_uid=request.draws.tracking_uid(mass.index),
                value_mm=float(mass.diameter_mm),
                finding_site=BREAST,
                laterality=LATERALITY[mass.laterality],
                frame=frame_index,
                points=points,
                evaluations=(CodedEvaluation(CLOCKFACE, clock_code(clock_position(mass.position, mass.laterality))),),
                quantities=(
                    Quantity(
                        codes.DCM.DistanceFromNipple,
                        round(distance_from_nipple_mm(mass.position, patient.breasts[mass.laterality]), 1),
                        codes.UCUM.Millimeter,
                    ),
                ),
            )
        )
    cluster_extents = [cluster_extent(c, patient, acq) for c in patient.calcifications]
    distortion_extents = [distortion_extent(d, patient, acq) for d in patient.distortions]
    for k, (c, (extent_mm, ends)) in enumerate(zip(patient.calcifications, cluster_extents)):
        measurements.append(
            LinearMeasurement(
                tracking_id=f"Calcification cluster {k + 1}",
                tracking_uid=request.draws.tracking_uid(50 + k),
                value_mm=extent_mm,
                finding_site=BREAST,
                laterality=LATERALITY[c.laterality],
                frame=acq.view_list.index((c.laterality, "CC")),
                points=ends,
                finding_type=CALCIFICATION,
                evaluations=(
                    CodedEvaluation(CALCIFICATION_TYPE, MORPHOLOGY_CODES[c.morphology]),
                    CodedEvaluation(CALCIFICATION_DISTRIBUTION, DISTRIBUTION_CODES[c.distribution]),
                    CodedEvaluation(CLOCKFACE, clock_code(clock_position(c.centre, c.laterality))),
                ),
                quantities=(Quantity(codes.DCM.NumberOfCalcifications, len(c.sizes_mm), codes.UCUM.NoUnits),),
            )
        )
    for d, (extent_mm, ends) in zip(patient.distortions, distortion_extents):
        measurements.append(
            LinearMeasurement(
                tracking_id=f"Architectural distortion {d.index + 1}",
                tracking_uid=request.draws.tracking_uid(70 + d.index),
                value_mm=extent_mm,
                finding_site=BREAST,
                laterality=LATERALITY[d.laterality],
                frame=acq.view_list.index((d.laterality, "CC")),
                points=ends,
                finding_type=DISTORTION,
                evaluations=(CodedEvaluation(CLOCKFACE, clock_code(clock_position(d.position, d.laterality))),),
            )
        )
    findings = []
    sides = []
    for side in ("R", "L"):
        masses = [m for m in patient.masses if m.laterality == side]
        calcs = [c for c in patient.calcifications if c.laterality == side]
        distortions = [d for d in patient.distortions if d.laterality == side]
        birads = breast_birads(masses, calcs, distortions)
        findings.append(
            QualitativeFinding(
                tracking_id=f"Breast {side}",
                tracking_uid=request.draws.tracking_uid(90 + (side == "L")),
                finding_type=Code("129715009", "SCT", "Breast composition"),
                finding_site=BREAST,
                laterality=LATERALITY[side],
                evaluations=(
                    CodedEvaluation(codes.DCM.AssessmentCategory, ASSESSMENT_CODES[birads]),
                    CodedEvaluation(codes.DCM.BreastComposition, COMPOSITION_CODES[patient.density]),
                ),
            )
        )
        found = [f"mass {m.index + 1} at {clock_position(m.position, side)} o'clock, {m.diameter_mm:.0f} mm" for m in masses]
        found += [
            f"{len(c.sizes_mm)} {c.morphology} calcifications, {c.distribution} distribution, "
            f"over {mm:.0f} mm at {clock_position(c.centre, side)} o'clock"
            for c, (mm, _) in zip(patient.calcifications, cluster_extents)
            if c.laterality == side
        ]
        found += [
            f"architectural distortion over {mm:.0f} mm at {clock_position(d.position, side)} o'clock"
            for d, (mm, _) in zip(patient.distortions, distortion_extents)
            if d.laterality == side
        ]
        sides.append(
            f"{'Right' if side == 'R' else 'Left'} breast: BI-RADS {birads}" + (f" ({'; '.join(found)})" if found else "")
        )
    summary = f"Breast density {patient.density} ({DENSITY_TEXT[patient.density]}). " + ". ".join(sides)
    return MeasurementReportSpec(
        study=request.study,
        series=context,
        source_series_uid=source_uid,
        measurements=tuple(measurements),
        findings=tuple(findings),
        measurement_name=codes.SCT.LongAxis,
        finding_type=codes.SCT.Mass,
        finding_category=codes.cid7150.MorphologicallyAbnormalStructure,
        summary=summary[:1024],
    )


def load(options: GeneratorOptions) -> MammographyGenerator:
    return MammographyGenerator()
