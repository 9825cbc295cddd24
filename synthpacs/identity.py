"""Who SynthPACS is, in DICOM terms: one home for every identity constant.

The file meta of every object, the association's A-ASSOCIATE-RQ/AC, the
General Equipment module and every query answer read these, so a Part 10 file
and a C-FIND answer can never disagree about them (issue: one home for every
derived value).
"""

from __future__ import annotations

from . import __version__

#: Specific Character Set (0008,0005): UTF-8 (PS3.3 C.12.1.1.2).
SPECIFIC_CHARACTER_SET = "ISO_IR 192"
MANUFACTURER = "SynthPACS"
INSTITUTION_NAME = "SynthPACS Synthetic Hospital"
REFERRING_PHYSICIAN_NAME = "SYNTHETIC^REFERRER"
DEIDENTIFICATION_METHOD = "Synthetic data; no real patient"
DEVICE_SERIAL_NUMBER = "SYNTHPACS-0001"
#: A constant, UUID-derived (PS3.5 B.2) Implementation Class UID of SynthPACS (file meta and association).
IMPLEMENTATION_CLASS_UID = "2.25.266115354629604364084772624832938842989"
#: Software Versions (0018,1020).
SOFTWARE_VERSION = __version__
#: Implementation Version Name (0002,0013): SH, at most 16 characters.
IMPLEMENTATION_VERSION_NAME = ("SYNTHPACS_" + SOFTWARE_VERSION.replace(".", ""))[:16]


def manufacturer_model_name(target: str) -> str:
    """Manufacturer's Model Name (0008,1090) for a generator target (e.g. ``chest/lung-ct``)."""
    return f"{MANUFACTURER} {target}"[:64]
