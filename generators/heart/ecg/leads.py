"""The twelve leads from the eight the network draws, and their codes (CID 3001).

Leads III, aVR, aVL and aVF are not drawn: they follow from I and II by
Einthoven's and Goldberger's equations (III = II - I, aVR = -(I + II)/2,
aVL = I - II/2, aVF = II - I/2). I and II are kept on even microvolts so
that every derived lead is an exact integer: the identities hold to the
sample in the stored waveform.
"""

from __future__ import annotations

import numpy as np
from pydicom.sr.coding import Code

#: Leads the network draws, in its output order, and its samples (10 s at 500 Hz).
NETWORK_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
SAMPLES = 5000
SAMPLING_HZ = 500
#: Microvolts per unit of the network's tanh output (DeepFake ECG's own scaling).
MICROVOLTS = 6000.0

#: Display and storage order of the standard 12-lead ECG.
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
#: CID 3001 (ECG Leads), MDC codes.
LEAD_CODES = {
    "I": Code("2:1", "MDC", "Lead I"),
    "II": Code("2:2", "MDC", "Lead II"),
    "III": Code("2:61", "MDC", "Lead III"),
    "aVR": Code("2:62", "MDC", "aVR, augmented voltage, right"),
    "aVL": Code("2:63", "MDC", "aVL, augmented voltage, left"),
    "aVF": Code("2:64", "MDC", "aVF, augmented voltage, foot"),
    "V1": Code("2:3", "MDC", "Lead V1"),
    "V2": Code("2:4", "MDC", "Lead V2"),
    "V3": Code("2:5", "MDC", "Lead V3"),
    "V4": Code("2:6", "MDC", "Lead V4"),
    "V5": Code("2:7", "MDC", "Lead V5"),
    "V6": Code("2:8", "MDC", "Lead V6"),
}


def lead_code(name: str) -> Code:
    """The CID 3001 code of a lead name; ValueError naming the leads known."""
    try:
        return LEAD_CODES[name]
    except KeyError:
        raise ValueError(f"unknown ECG lead {name!r} (known: {', '.join(LEADS)})") from None


def twelve_leads(eight: np.ndarray) -> np.ndarray:
    """(8, n) microvolts in the network's order -> (12, n) integers in :data:`LEADS` order."""
    if eight.ndim != 2 or eight.shape[0] != len(NETWORK_LEADS):
        raise ValueError(f"expected ({len(NETWORK_LEADS)}, samples) leads {', '.join(NETWORK_LEADS)}, got shape {eight.shape}")
    by_name: dict[str, np.ndarray] = dict(zip(NETWORK_LEADS, np.rint(eight).astype(np.int64)))
    lead_i = 2 * np.rint(eight[0] / 2).astype(np.int64)  # even, so that halves are exact
    lead_ii = 2 * np.rint(eight[1] / 2).astype(np.int64)
    derived: dict[str, np.ndarray] = {
        "I": lead_i,
        "II": lead_ii,
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) // 2,
        "aVL": lead_i - lead_ii // 2,
        "aVF": lead_ii - lead_i // 2,
    }
    by_name.update(derived)
    return np.stack([by_name[name] for name in LEADS])
