"""Builders keyed by SOP class: typed specs in, Datasets out.

Each builder registers the SOP classes it writes and a version; the archive
keys its instance cache by those versions, so a fix to a builder invalidates
the files it made before (bump ``version`` with any change to its output).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import CTImageStorage

from .headers import SeriesHeaders
from .spec import BuiltSeries, IODSpec


@dataclass(frozen=True)
class Builder:
    sop_class_uids: tuple[str, ...]
    version: int
    build: Callable[[IODSpec, BuiltSeries], list[Dataset]]
    #: Whether the SOP class has a pixel matrix a viewer renders (not SEG, SR or waveforms).
    renders: bool = True
    #: The instances' attributes without building their pixels; None: built whole, pixels taken out.
    headers: Callable[[IODSpec], SeriesHeaders] | None = None


def _ct(spec, built):
    from .ct import build_ct_series

    return build_ct_series(spec)


def _ct_headers(spec):
    from .ct import ct_series_headers

    return ct_series_headers(spec)


def _seg(spec, built):
    from .seg import build_segmentation

    return [build_segmentation(spec, built.source(spec.source_series_uid))]


def _sr(spec, built):
    from .sr import build_measurement_report

    return [build_measurement_report(spec, built.source(spec.source_series_uid))]


def _photo(spec, built):
    from .photo import build_color_images

    return build_color_images(spec)


def _mg(spec, built):
    from .mg import build_mammograms

    return build_mammograms(spec)


def _ecg(spec, built):
    from .ecg import build_ecg

    return [build_ecg(spec)]


BUILDERS: tuple[Builder, ...] = (
    Builder((CTImageStorage,), 2, _ct, headers=_ct_headers),  # 2: no pixel-derived attributes
    Builder(("1.2.840.10008.5.1.4.1.1.66.4",), 1, _seg, renders=False),
    Builder(("1.2.840.10008.5.1.4.1.1.88.33",), 1, _sr, renders=False),
    Builder(("1.2.840.10008.5.1.4.1.1.77.1.4",), 1, _photo),  # VL Photographic Image Storage
    Builder(("1.2.840.10008.5.1.4.1.1.1.2",), 1, _mg),  # Digital Mammography X-Ray Image - For Presentation
    Builder(("1.2.840.10008.5.1.4.1.1.9.1.1",), 2, _ecg, renders=False),  # 12-lead ECG Waveform Storage (rendered as its chart)
)
_BY_SOP_CLASS = {uid: b for b in BUILDERS for uid in b.sop_class_uids}


def builder_for(sop_class_uid: str) -> Builder:
    """The builder of a SOP class; ValueError naming it when none is registered."""
    try:
        return _BY_SOP_CLASS[str(sop_class_uid)]
    except KeyError:
        raise ValueError(f"no IOD builder is registered for SOP class {sop_class_uid}") from None


def build_headers(specs: Iterable[IODSpec]) -> dict[str, SeriesHeaders]:
    """The header-only instances of every spec's series, by series instance UID (pixels unmade
    where the builder can say its attributes without them, else built and taken out)."""
    made: dict[str, SeriesHeaders] = {}
    for spec in specs:
        builder = builder_for(spec.sop_class_uid)
        uid = spec.series.series_instance_uid
        if uid in made:
            raise ValueError(f"series {uid} is given by more than one spec")
        if builder.headers is not None:
            made[uid] = builder.headers(spec)
        else:
            made[uid] = SeriesHeaders.from_datasets(build([spec])[uid])
    return made


# SOP classes with no image to render among those the builders do not write (stored objects):
# SR, SEG, KOS, presentation states, RT plans, encapsulated documents, waveforms.
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.481.",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.9.",
)


def renders(sop_class_uid: str) -> bool:
    """Whether instances of a SOP class carry an image a viewer renders."""
    builder = _BY_SOP_CLASS.get(str(sop_class_uid))
    if builder is not None:
        return builder.renders
    return not str(sop_class_uid).startswith(_NON_IMAGE_PREFIXES)


def builders_version(sop_class_uids: Iterable[str]) -> str:
    """A short digest of the versions of the builders of these SOP classes (part of the cache key)."""
    text = ",".join(f"{uid}={builder_for(uid).version}" for uid in sorted(set(sop_class_uids)))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def build(specs: Iterable[IODSpec], built: BuiltSeries | None = None) -> dict[str, list[Dataset]]:
    """Build every spec in order; later specs (SEG, SR) find their source among the earlier ones.

    Returns the datasets made here, by series instance UID, in instance order.
    """
    built = built if built is not None else BuiltSeries()
    made: dict[str, list[Dataset]] = {}
    for spec in specs:
        datasets = builder_for(spec.sop_class_uid).build(spec, built)
        uid = spec.series.series_instance_uid
        built.datasets.setdefault(uid, []).extend(datasets)
        made.setdefault(uid, []).extend(datasets)
    return made
