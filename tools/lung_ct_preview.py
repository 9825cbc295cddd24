"""Write a PNG montage of a synthetic lung-cancer chest CT, to look at.

Top rows: axial slices at several heights in the lung window (W 1500, L -600)
and the mediastinal window (W 400, L 40); bottom: coronal and sagittal
reformats through the carina, with lesion outlines in red.

Usage::

    python tools/lung_ct_preview.py OUT.png [--seed N] [--sex F] [--size 512]
        [--slices 130] [--thickness 2.5] [--lesions 2] [--diameter 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.chest.lung_ct import (  # noqa: E402
    CTGrid,
    Label,
    draw_anatomy,
    label_volume,
    lesion_measurement,
    place_lesions,
    render_hu,
)


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    lo = level - width / 2
    return (np.clip((hu.astype(np.float32) - lo) / width, 0, 1) * 255).astype(np.uint8)


def to_rgb(gray: np.ndarray, outline: np.ndarray | None = None) -> Image.Image:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if outline is not None:
        rgb[outline] = (255, 40, 40)
    return Image.fromarray(rgb)


def edge(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sex", default="M")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fov", type=float, default=360.0)
    ap.add_argument("--slices", type=int, default=130)
    ap.add_argument("--thickness", type=float, default=2.5)
    ap.add_argument("--lesions", type=int, default=2)
    ap.add_argument("--diameter", type=float, default=30.0)
    ap.add_argument("--tile", type=int, default=256, help="pixel size of each tile")
    args = ap.parse_args(argv)

    grid = CTGrid(args.size, args.size, args.slices, args.fov / args.size, args.thickness)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    anat = draw_anatomy(rng, grid, args.sex)
    sites = place_lesions(anat, grid, args.lesions, rng)
    t1 = time.perf_counter()
    labels = label_volume(anat, grid, [(s, args.diameter * (1 - 0.3 * i)) for i, s in enumerate(sites)])
    t2 = time.perf_counter()
    hu = render_hu(labels, grid, np.random.default_rng(args.seed + 1000))
    t3 = time.perf_counter()
    print(f"anatomy+sites {t1 - t0:.2f}s  labels {t2 - t1:.2f}s  render {t3 - t2:.2f}s  shape {hu.shape}")
    for i, s in enumerate(sites):
        m = lesion_measurement(labels, grid, i)
        print(f"lesion {i}: {s.lobe} centre {tuple(round(v, 1) for v in s.centre_mm)} measured {m}")

    K = grid.n_slices
    tumour = labels >= Label.TUMOUR
    picks = [int(round(f * (K - 1))) for f in (0.08, 0.22, 0.36, 0.5, 0.64, 0.8, 0.93)]
    for i in range(len(sites)):
        m = lesion_measurement(labels, grid, i)
        if m is not None and m.slice not in picks:
            picks.append(m.slice)
    T = args.tile
    tiles_lung = [to_rgb(window(hu[k], 1500, -600), edge(tumour[k])).resize((T, T)) for k in picks]
    tiles_med = [to_rgb(window(hu[k], 400, 40)).resize((T, T)) for k in picks]
    # Reformats with square pixels.
    zscale = grid.slice_spacing_mm / grid.pixel_spacing_mm
    r_car = int(np.argmax((labels == Label.AIRWAY).sum(axis=(0, 2))))
    cor = hu[:, r_car, :]
    c_mid = grid.columns // 2
    sag = hu[:, :, c_mid - int(15 / grid.pixel_spacing_mm)]
    h = max(1, int(round(K * zscale)))

    def reformat(img, mask):
        im = to_rgb(window(img, 1500, -600), edge(mask)).resize((img.shape[1], h), Image.NEAREST)
        im2 = to_rgb(window(img, 400, 40)).resize((img.shape[1], h), Image.BILINEAR)
        s = T * 2 / img.shape[1]
        return [x.resize((int(img.shape[1] * s), int(h * s))) for x in (im, im2)]

    cor_l, cor_m = reformat(cor, tumour[:, r_car, :])
    sag_l, sag_m = reformat(sag, tumour[:, :, c_mid - int(15 / grid.pixel_spacing_mm)])
    ncol = len(picks)
    width = max(ncol * T, 4 * 2 * T)
    height = 2 * T + max(cor_l.height, sag_l.height)
    canvas = Image.new("RGB", (width, height), (20, 20, 20))
    d = ImageDraw.Draw(canvas)
    for i, (a, b) in enumerate(zip(tiles_lung, tiles_med)):
        canvas.paste(a, (i * T, 0))
        canvas.paste(b, (i * T, T))
        d.text((i * T + 4, 4), f"k={picks[i]}", fill=(255, 255, 0))
    y0 = 2 * T
    for i, im in enumerate((cor_l, cor_m, sag_l, sag_m)):
        canvas.paste(im, (i * 2 * T, y0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
