"""Reading and writing 10-second ECGs outside DICOM-from-the-archive: the user's own, and DeepFake ECG's text format.

Readers give the eight leads the network draws (I, II, V1-V6) at 500 Hz for
10 s, in microvolts, as (8, 5000) float arrays:

* DICOM 12-lead (or General) ECG Waveform files (``*.dcm``), leads found by
  their CID 3001 codes or meanings, resampled from any rate;
* DeepFake ECG's text format (``*.asc``: 5000 rows of 8 integers, microvolts);
* CSV (``*.csv``): 5000 rows of 8 numbers in microvolts, with or without a
  header row (a header names the leads, in any order).

A longer recording is cut to its first 10 s; a shorter one, a missing lead
or a file that is none of these is refused with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthpacs.errors import ConfigError

from .leads import NETWORK_LEADS, SAMPLES, SAMPLING_HZ

SUFFIXES = (".dcm", ".asc", ".csv")


def _fit(values: np.ndarray, hz: float, where: Path) -> np.ndarray:
    """(8, n) at ``hz`` -> (8, 5000) at 500 Hz (linear resampling; the first 10 s)."""
    seconds = values.shape[1] / hz
    if seconds < SAMPLES / SAMPLING_HZ - 1e-6:
        raise ConfigError(f"{where}: {seconds:.2f} s of ECG; 10 s are needed")
    t_in = np.arange(values.shape[1]) / hz
    t_out = np.arange(SAMPLES) / SAMPLING_HZ
    return np.stack([np.interp(t_out, t_in, lead) for lead in values]).astype(np.float32)


def read_dicom(path: Path) -> np.ndarray:
    from pydicom import dcmread

    from synthpacs.imaging.ecg_chart import leads_of

    try:
        ds = dcmread(path)
    except Exception as exc:  # pydicom raises several kinds for a file that is not DICOM
        raise ConfigError(f"{path}: not a DICOM file ({exc})") from None
    if "WaveformSequence" not in ds:
        raise ConfigError(f"{path}: no Waveform Sequence (not an ECG waveform object)")
    leads, hz = leads_of(ds)
    missing = [name for name in NETWORK_LEADS if name not in leads]
    if missing:
        raise ConfigError(f"{path}: leads {', '.join(missing)} are missing (found: {', '.join(leads)})")
    return _fit(np.stack([leads[name] * 1000.0 for name in NETWORK_LEADS]), hz, path)  # mV -> uV


def read_text(path: Path) -> np.ndarray:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{path}: empty")
    separator = "," if path.suffix.lower() == ".csv" else None
    first = [cell.strip() for cell in (lines[0].split(separator) if separator else lines[0].split())]
    order = list(range(len(NETWORK_LEADS)))
    try:
        float(first[0])
    except ValueError:  # a header row naming the leads
        names = [cell.strip('"') for cell in first]
        missing = [name for name in NETWORK_LEADS if name not in names]
        if missing:
            raise ConfigError(f"{path}: header lacks leads {', '.join(missing)} (has: {', '.join(names)})") from None
        order = [names.index(name) for name in NETWORK_LEADS]
        lines = lines[1:]
    try:
        table = np.array([[float(cell) for cell in (line.split(separator) if separator else line.split())] for line in lines])
    except ValueError as exc:
        raise ConfigError(f"{path}: not a table of numbers ({exc})") from None
    if table.ndim != 2 or table.shape[1] < len(NETWORK_LEADS):
        raise ConfigError(
            f"{path}: expected rows of {len(NETWORK_LEADS)} leads ({', '.join(NETWORK_LEADS)}), got shape {table.shape}"
        )
    return _fit(table[:, order].T, SAMPLING_HZ, path)


def read_ecg(path: Path) -> np.ndarray:
    """One 10-s ECG file as (8, 5000) microvolts; ConfigError naming the file when it cannot be read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".dcm":
        return read_dicom(path)
    if suffix in (".asc", ".csv"):
        return read_text(path)
    raise ConfigError(f"{path}: not an ECG this reader knows (use {', '.join(SUFFIXES)})")


def read_folder(folder: Path) -> tuple[np.ndarray, list[Path]]:
    """Every ECG file of a folder (recursively), stacked (n, 8, 5000)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        raise ConfigError(f"{folder}: holds no ECG files ({', '.join(SUFFIXES)})")
    return np.stack([read_ecg(p) for p in files]), files


def write_asc(path: Path, eight: np.ndarray) -> None:
    """DeepFake ECG's text format: 5000 rows of 8 integers (I, II, V1-V6), microvolts."""
    np.savetxt(path, np.rint(np.asarray(eight).T).astype(np.int64), fmt="%i")
