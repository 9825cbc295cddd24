"""Write one breast-cancer subject's four views at baseline and at a follow-up, to look at.

Top row: RCC, LCC, RMLO, LMLO at baseline; bottom row: the same at the
follow-up, as WADO-RS ``/rendered`` draws them, with each mass's SEG outline
in red. The subject is the first in the default universe whose index mass
has shrunk by the follow-up.

Usage::

    python tools/mammography_course.py OUT.png [--data-dir DIR] [--width 360]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread  # noqa: E402

from synthpacs.archive import Archive  # noqa: E402
from synthpacs.config import load_config  # noqa: E402
from synthpacs.imaging.render import render_frame  # noqa: E402

MG, SEG = "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.66.4"


def _views(archive: Archive, study_uid: str, width: int) -> list[Image.Image]:
    refs = archive.instances(study_uid)
    segs = [dcmread(io.BytesIO(archive.instance_bytes(r))) for r in refs if r.sop_class_uid == SEG]
    out = []
    for ref, seg in zip([r for r in refs if r.sop_class_uid == MG], segs):
        image = np.asarray(render_frame(dcmread(io.BytesIO(archive.instance_bytes(ref)))).convert("RGB")).copy()
        masks = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
        for mask, item in zip(masks, seg.SegmentSequence):
            if str(item.SegmentLabel).startswith(("Mass", "Calcifications")):
                edge = mask.astype(bool) & ~ndimage.binary_erosion(mask.astype(bool), iterations=3)
                image[edge] = (255, 40, 40)
        rows, cols = np.nonzero(image.max(axis=2) > 0)  # the breast's bounding box: no detector air in the montage
        tile = Image.fromarray(image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
        out.append(tile.resize((round(width * tile.width / tile.height), width), Image.Resampling.LANCZOS))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--width", type=int, default=360, help="tile height in pixels")
    args = parser.parse_args()
    archive = Archive(load_config(None, {"data_dir": args.data_dir or tempfile.mkdtemp(prefix="mg-course-")}))
    universe = archive._universe
    for patient in range(universe.n_patients):
        studies = [s for s in universe.studies_of(patient) if s.exam.target == "breast/mammography" and universe.is_performed(s)]
        if len(studies) < 2 or not studies[0].lesion_diameters_mm:
            continue
        first, later = studies[0], studies[-1]
        if not 0 < later.lesion_diameters_mm[0] < 0.8 * first.lesion_diameters_mm[0]:
            continue
        rows = [_views(archive, s.study_instance_uid, args.width) for s in (first, later)]
        height = args.width  # tiles share a height (the --width value), widths follow each breast
        canvas = Image.new("RGB", (max(sum(t.width + 4 for t in tiles) for tiles in rows), 2 * height + 4), "black")
        for r, tiles in enumerate(rows):
            x = 0
            for tile in tiles:
                canvas.paste(tile, (x, r * (height + 4)))
                x += tile.width + 4
        args.out.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(args.out, optimize=True)
        print(f"wrote {args.out}: {first.patient.patient_id}, {first.time_point_description} and {later.time_point_description}")
        return
    raise SystemExit("no subject with a shrinking mass and a follow-up in this universe")


if __name__ == "__main__":
    main()
