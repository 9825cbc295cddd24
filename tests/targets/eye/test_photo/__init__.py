"""A small 2-D colour target for the contract tests: two 64x64 RGB photographs and their SEG."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydicom.sr.codedict import codes

from synthpacs.generation.contract import GeneratorOptions, Part, PlanDraws, SeriesSlot, StudyPlan, StudyRequest, ZooTarget
from synthpacs.imaging.spec import ColorImageSpec, IODSpec, Segment, SegmentationSpec

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SLOTS = (
    SeriesSlot("image", 1, "XC", VL_PHOTOGRAPHIC),
    SeriesSlot("segmentation", 100, "SEG", SEGMENTATION),
)
LESION = 1


class Acquisition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(64, ge=16, le=512, multiple_of=8)


def plan(draws: PlanDraws) -> StudyPlan:
    n, size = len(draws), draws.acquisition.size
    ones = np.ones(n, dtype=np.int64)
    descriptions = np.empty((n, 2), dtype=object)
    descriptions[:, 0] = "Colour photographs, both eyes"
    descriptions[:, 1] = "Lesion (ground truth)"
    # One SEG per photograph: a photograph has no Frame of Reference to stack frames in.
    return StudyPlan(
        n_instances=np.stack([2 * ones, 2 * ones], axis=1),
        frames=np.stack([ones * 0, ones * 0], axis=1),
        rows=np.stack([ones * size, ones * size], axis=1),
        columns=np.stack([ones * size, ones * size], axis=1),
        descriptions=descriptions,
    )


class PhotoGenerator:
    fingerprint = "test-photo-1"

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        size = request.acquisition.size
        rng = request.draws.study_rng("photo")
        yy, xx = np.mgrid[0:size, 0:size]
        images, labels = [], np.zeros((2, size, size), np.uint8)
        for eye in range(2):
            cy, cx = rng.uniform(0.3, 0.7, 2) * size
            lesion = (yy - cy) ** 2 + (xx - cx) ** 2 < (size / 8) ** 2
            labels[eye][lesion] = LESION
            image = np.zeros((size, size, 3), np.uint8)
            disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2
            image[disk] = (180, 60, 30)
            image[lesion] = (240, 220, 120)
            images.append(image)
        photo, seg = request.by_role("image"), request.by_role("segmentation")
        assert photo is not None and seg is not None
        segment = Segment(
            label_value=LESION,
            label="Lesion",
            tracking_id="Lesion 1",
            tracking_uid=request.draws.tracking_uid(0),
            category=codes.cid7150.MorphologicallyAbnormalStructure,
            property_type=codes.cid7159.Lesion,
            anatomic_region=codes.SCT.Eye,
        )
        specs: list[IODSpec] = [
            ColorImageSpec(
                study=request.study, series=photo.context, pixels=tuple(images), laterality="B", anatomic_region=codes.SCT.Eye
            ),
            *(
                SegmentationSpec(
                    study=request.study,
                    series=seg.context,
                    source_series_uid=photo.context.series_instance_uid,
                    labels=labels[eye : eye + 1],
                    segments=(segment,),
                    source_instances=(eye,),
                    instance_index=eye,
                )
                for eye in range(2)
            ),
        ]
        if part is None:
            return specs
        return [s for s in specs if s.series is request.series[part.series_index].context]


TARGET = ZooTarget(
    name="eye/test-photo",
    title="Test target: colour photographs with a SEG",
    slots=SLOTS,
    plan=plan,
    renderers=("drawn",),
    load=lambda options: PhotoGenerator(),
    fingerprint=lambda options: PhotoGenerator.fingerprint,
    acquisition=Acquisition,
)

__all__ = ["TARGET", "GeneratorOptions"]
