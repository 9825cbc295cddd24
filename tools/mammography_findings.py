"""Write crops of the mammography target's findings in CC and MLO, to look at.

One row per BI-RADS calcification morphology (its first distribution drawn)
and one for architectural distortion, each as the teacher renders it at
detector size (0.085 mm pixels), 40 mm square around the finding, in both
views of the same breast. Each crop is scaled to its own 1st-99.5th
percentile, as a reader would window it.

Usage::

    python tools/mammography_findings.py OUT.png [--size 300]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.breast.mammography import geometry  # noqa: E402
from generators.breast.mammography.teacher import CALCIFICATION_LABEL, DISTORTION_LABEL, render_view  # noqa: E402

ROWS, COLUMNS, PIXEL_MM, BITS = 3328, 2560, 0.085, 12
CROP_MM = 40.0


def _patient(finding: str) -> geometry.Patient:
    """The first patient (by seed) whose cluster has ``finding``'s morphology, or who has a distortion."""
    for seed in range(1000):
        distortion = finding == "architectural distortion"
        patient = geometry.draw_patient(np.random.default_rng(seed), {"B": 1.0}, 0.0 if distortion else 1.0, 0, float(distortion))
        if distortion or patient.calcifications[0].morphology == finding:
            return patient if distortion else replace(patient, distortions=())
    raise RuntimeError(f"no patient with {finding} in 1000 seeds")


def _crop(pixels: np.ndarray, centre: tuple[float, float], size: int) -> Image.Image:
    half = int(CROP_MM / PIXEL_MM / 2)
    r0 = int(np.clip(centre[0] - half, 0, ROWS - 2 * half))
    c0 = int(np.clip(centre[1] - half, 0, COLUMNS - 2 * half))
    crop = pixels[r0 : r0 + 2 * half, c0 : c0 + 2 * half].astype(np.float32)
    tissue = crop[crop > 0]
    lo, hi = np.percentile(tissue, [1, 99.5]) if tissue.size else (0.0, 1.0)
    scaled = np.clip((crop - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled).resize((size, size), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=300, help="pixels per crop")
    args = parser.parse_args(argv)
    findings = [*geometry.MORPHOLOGIES, "architectural distortion"]
    label_width = 230
    sheet = Image.new("L", (label_width + 2 * args.size, len(findings) * args.size), 0)
    draw = ImageDraw.Draw(sheet)
    for row, finding in enumerate(findings):
        patient = _patient(finding)
        if finding == "architectural distortion":
            side, key, caption = patient.distortions[0].laterality, DISTORTION_LABEL, finding
        else:
            cluster = patient.calcifications[0]
            side, key, caption = cluster.laterality, CALCIFICATION_LABEL, f"{finding}\n{cluster.distribution}"
        for column, view in enumerate(("CC", "MLO")):
            pixels, _, _, centres = render_view(patient, side, view, ROWS, COLUMNS, PIXEL_MM, BITS, np.random.default_rng(1))
            centre = centres.get(key, (ROWS / 2, COLUMNS / 2))
            sheet.paste(_crop(pixels, centre, args.size), (label_width + column * args.size, row * args.size))
        draw.multiline_text((10, row * args.size + 10), f"{caption}\n{side}CC | {side}MLO", fill=255)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
