"""A series' attributes without its pixels: what every instance shares, and what each adds.

Metadata of a series that is not generated yet is answered from these
(DESIGN: metadata never waits for pixels). Keeping the shared attributes
once lets a client's series metadata be encoded from one template and a few
attributes per instance, instead of one full dataset per instance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydicom import DataElement, Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.multival import MultiValue
from pydicom.valuerep import VR

__all__ = ["PIXEL_DATA", "SeriesHeaders"]

PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class SeriesHeaders:
    """The header-only instances of one series.

    Instance ``i`` is ``shared`` with ``own[i]`` laid over it, its file meta
    ``file_meta(i)`` (made on demand: metadata needs only the series' transfer
    syntax), plus a Pixel Data element of VR ``pixel_vr`` holding
    ``pixel_length`` zero bytes: every attribute equals the generated
    instance's, and Pixel Data has the generated value's VR and length.
    """

    shared: Dataset
    own: tuple[Dataset, ...]
    file_meta: Callable[[int], FileMetaDataset]
    transfer_syntax_uid: str
    pixel_vr: str | None = None  # None: the instances carry no Pixel Data
    pixel_length: int = 0

    @classmethod
    def from_datasets(cls, datasets: Sequence[Dataset]) -> SeriesHeaders:
        """Headers of whole built datasets (nothing shared); their Pixel Data is taken out of them."""
        own, metas, vr, length = [], [], None, 0
        for ds in datasets:
            metas.append(ds.file_meta)
            if PIXEL_DATA in ds:
                # The VR resolved as the file writer resolves it ("OB or OW": OW for 16 bits).
                vr = correct_ambiguous_vr_element(ds[PIXEL_DATA], ds, True).VR or "OW"
                length = len(ds.PixelData)
                del ds[PIXEL_DATA]
            del ds.file_meta
            own.append(ds)
        syntaxes = {str(meta.TransferSyntaxUID) for meta in metas}
        if len(syntaxes) != 1:
            raise ValueError(f"a series' instances have one transfer syntax, these have {sorted(syntaxes)}")
        return cls(Dataset(), tuple(own), metas.__getitem__, syntaxes.pop(), vr, length)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(self.dataset_attribute(i, "SOPInstanceUID")) for i in range(len(self.own))]

    def dataset_attribute(self, index: int, keyword: str):
        """One attribute of instance ``index`` without building the instance."""
        own = self.own[index]
        return own.get(keyword, self.shared.get(keyword))

    def dataset(self, index: int) -> Dataset:
        """Instance ``index`` as a full dataset (its own copy: the caller may change it)."""
        ds = _copy(self.shared, Dataset())
        for element in self.own[index]:
            ds[element.tag] = _copy_element(element)
        ds.file_meta = _copy(self.file_meta(index), FileMetaDataset())
        if self.pixel_vr is not None:
            ds.add_new(PIXEL_DATA, self.pixel_vr, _zeros(self.pixel_length))
        return ds

    def datasets(self) -> list[Dataset]:
        return [self.dataset(i) for i in range(len(self.own))]


_D = TypeVar("_D", bound=Dataset)


def _copy_element(element: DataElement) -> DataElement:
    """A copy the caller may change without touching ``element``: a new element whose value is
    shared where it cannot change in place (str, numbers, bytes, names), copied where it can
    (multiple values, sequences). A deep copy gives the same bytes, about ten times slower."""
    if element.VR == VR.SQ or element.is_buffered:
        return copy.deepcopy(element)
    duplicate = copy.copy(element)
    if isinstance(element.value, MultiValue | list):
        duplicate.value = copy.deepcopy(element.value)
    return duplicate


def _copy(dataset: Dataset, into: _D) -> _D:
    """``into`` filled with a copy of each of ``dataset``'s elements (see :func:`_copy_element`)."""
    out = into
    for element in dataset:
        out[element.tag] = _copy_element(element)
    return out


_ZEROS: dict[int, bytes] = {}


def _zeros(length: int) -> bytes:
    """One zero value per length, shared by every header instance (a series costs one frame)."""
    value = _ZEROS.get(length)
    if value is None:
        if len(_ZEROS) > 16:
            _ZEROS.clear()
        value = _ZEROS[length] = bytes(length)
    return value
