"""Objects the benchmarks store into an archive: pydicom's small CT with other identifiers."""

from __future__ import annotations

import copy
import functools
import io

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file


@functools.cache
def _template() -> Dataset:
    return dcmread(get_testdata_file("CT_small.dcm"))


def small_ct(**attributes) -> bytes:
    """pydicom's CT_small (128x128, 39 kB) with ``attributes`` set, as Part 10 bytes."""
    ds = copy.deepcopy(_template())
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def external_study(i: int, root: str, instances: int = 2) -> list[bytes]:
    """Study ``i`` of an outside patient ``EXT-<i>``: one CT series of ``instances`` small CTs, UIDs under ``root``."""
    study = f"{root}.{i + 1}"
    return [
        small_ct(
            PatientID=f"EXT-{i:05d}",
            PatientName=f"EXTERNAL^PATIENT{i:05d}",
            StudyInstanceUID=study,
            SeriesInstanceUID=f"{study}.1",
            SOPInstanceUID=f"{study}.1.{k + 1}",
            InstanceNumber=k + 1,
        )
        for k in range(instances)
    ]
