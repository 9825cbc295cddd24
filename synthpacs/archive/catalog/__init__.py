"""The catalog: one SQLite file that indexes the synthetic universe and the
objects received by STOW-RS and C-STORE, and answers C-FIND / QIDO queries.

Synthetic rows are compact: patients and studies are tables built from the
seed with vectorised code; series come from a join of studies with their
*plan variant* (the distinct series layouts the targets' study plans give:
which series, instances, frames, rows, columns, descriptions), so nothing in
the catalog knows a modality; instances are enumerated from a series on
demand. UIDs are not stored for synthetic objects: they are minted from each
row's path and decoded back (see :mod:`..uids`). That keeps a million
patients in a few hundred MB.

Stored objects live in ``stored_*`` tables of the same file. SQL narrows a
query to its stored candidates and the same rules as the synthetic side
(:func:`..matching.match_value`) decide on them; they are listed before the
synthetic matches, which keeps the order stable.

Modules, by concern:

``schema``
    tables, indexes, the joined columns and the layout version
``fields``
    query levels, the matchable attributes of each level, return keys
``build``
    building the synthetic tables from the universe (vectorised, by chunk)
``synthetic``
    C.2.2.2 matching over the synthetic tables (SQL)
``stored``
    the index of stored objects and their queries
``answers``
    rows -> the attributes of C-FIND / QIDO answers (Datasets or DICOM JSON later)
``core``
    :class:`Catalog`: connections, the rebuild decision, ``find``
"""

from __future__ import annotations

from .answers import StoredCounts, SyntheticAttributes
from .core import Catalog
from .fields import (
    IMAGE_FIELDS,
    LEVEL_FIELDS,
    PATIENT_FIELDS,
    REFERRING_PHYSICIAN,
    RETURN_KEYWORDS,
    SEQUENCE_ITEM_VRS,
    SERIES_FIELDS,
    STUDY_FIELDS,
    Attributes,
    Field,
    Query,
    QueryLevel,
    Variant,
    element_text,
    put,
    to_dataset,
    vr_of,
)
from .schema import CHUNK, LAYOUT_VERSION, PATIENT_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS

__all__ = [
    "CHUNK",
    "IMAGE_FIELDS",
    "LAYOUT_VERSION",
    "LEVEL_FIELDS",
    "PATIENT_COLUMNS",
    "PATIENT_FIELDS",
    "REFERRING_PHYSICIAN",
    "RETURN_KEYWORDS",
    "SEQUENCE_ITEM_VRS",
    "SERIES_COLUMNS",
    "SERIES_FIELDS",
    "STUDY_COLUMNS",
    "STUDY_FIELDS",
    "Attributes",
    "Catalog",
    "Field",
    "Query",
    "QueryLevel",
    "StoredCounts",
    "SyntheticAttributes",
    "Variant",
    "element_text",
    "put",
    "to_dataset",
    "vr_of",
]
