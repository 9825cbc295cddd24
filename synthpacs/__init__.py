"""SynthPACS: a PACS that holds no patients.

Every study is fabricated on demand from a deterministic synthetic universe
and served over DIMSE and DICOMweb.
"""

__version__ = "0.1.0"
