"""Measuring the mammography renderer against real mammograms (``synthpacs evaluate breast/mammography``).

* **Texture Fréchet distance** on the project's fixed filter bank
  (:class:`synthpacs.generation.evaluate.FilterBank`, no downloads) between
  patches of generated and of real mammograms, next to the real-versus-real
  floor (the two real patients' patches against each other). Patches are
  25.6 mm squares inside the breast (away from the skin line), both at
  0.1 mm, each scaled to [0, 1] by its own image's 1st-99th percentiles in
  the breast.
* **Diversity**: mean MS-SSIM between random pairs of generated patches (lower: more diverse).
* **Density**: the share of the breast that is dense (above the image's
  breast-median by 0.15 of its range), per BI-RADS class drawn.
* **Lesion contrast**: mass-minus-surrounding mean value inside the SEG masks, in units of the breast's SD.
* A montage of real and generated patches side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthpacs.generation.evaluate import (
    EvaluationRequest,
    FilterBank,
    frechet_distance,
    intra_set_ms_ssim,
    standardise,
    update_card_block,
)

from .geometry import at_visit, draw_patient
from .realdata import REAL_PIXEL_MM, real_mammograms
from .teacher import SKIN_FALLOFF_MM, glandular_value, outline, render_view

PATCH_MM = 25.6
PIXEL_MM = 0.1
PATCH = int(PATCH_MM / PIXEL_MM)  # 256
SUMMARY_HEADERS = ("quantity", "generated", "real reference")

#: The share of the breast that is dense, by BI-RADS density class (4th edition, quartiles).
AREA_BANDS = {"A": "under 25 %", "B": "25-50 %", "C": "51-75 %", "D": "over 75 %"}


def _normalised(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An image in [0, 1] by its breast's 1st-99th percentiles, and the breast mask (away from the skin)."""
    from scipy import ndimage

    values = image.astype(np.float32)
    breast = values > np.percentile(values, 30) * 0.5 + 0.05 * values.max()
    breast = ndimage.binary_erosion(ndimage.binary_fill_holes(breast), iterations=int(12 / PIXEL_MM))
    low, high = np.percentile(values[breast], [1, 99]) if breast.any() else (0.0, 1.0)
    return np.clip((values - low) / max(high - low, 1e-6), 0, 1), breast


def patches(image: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Up to ``n`` random PATCH x PATCH patches wholly inside the breast."""
    scaled, breast = _normalised(image)
    rows, cols = np.nonzero(breast[: -PATCH or None, : -PATCH or None])
    out: list[np.ndarray] = []
    for _ in range(n * 20):
        if len(out) == n or not len(rows):
            break
        k = int(rng.integers(len(rows)))
        r, c = rows[k], cols[k]
        if breast[r : r + PATCH, c : c + PATCH].all():
            out.append(scaled[r : r + PATCH, c : c + PATCH])
    return out


def _downsample(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((int(w / factor), int(h / factor)), Image.Resampling.BOX)
    return np.asarray(resized)


def percent_density(pixels: np.ndarray, geometry, threshold: float) -> float:
    """Area percent density: the share of the breast, inside the skin fall-off, brighter than the
    value tissue of half glandular share gets at full thickness (a fixed-threshold reading)."""

    inside, skin = outline(geometry)
    core = inside & (skin > SKIN_FALLOFF_MM)
    return float((pixels[core] > threshold).mean()) if core.any() else 0.0


def evaluate(request: EvaluationRequest) -> dict:
    data = Path(request.extra.get("data_dir") or "data") / "real"
    per_image = int(request.extra.get("patches") or 24)
    rng = np.random.default_rng([request.seed, 11])
    real = real_mammograms(data)
    real_sets: dict[str, list[np.ndarray]] = {}
    for (case, _, _), image in real:
        real_sets.setdefault(case, []).extend(patches(_downsample(image, PIXEL_MM / REAL_PIXEL_MM), rng, per_image))
    generated: list[np.ndarray] = []
    density: dict[str, list[float]] = {}
    contrast: list[float] = []
    n_patients = int(request.volumes)
    threshold = glandular_value(0.5, 12)
    for i in range(n_patients):
        draw = np.random.default_rng([request.seed, 12, i])
        klass = "ABCD"[i % 4]  # every density class in turn
        patient = at_visit(draw_patient(draw, {klass: 1.0}, 0.5, 1), (float(draw.uniform(15, 40)),), 0, draw)
        for laterality, view in (("R", "CC"), ("L", "MLO")):
            pixels, labels, geometry, _ = render_view(patient, laterality, view, 2400, 1920, PIXEL_MM, 12, draw)
            generated.extend(patches(pixels, draw, per_image // 2))
            scaled, breast = _normalised(pixels)
            if view == "CC":  # area density on CC (MLO's pectoral muscle would read as dense)
                density.setdefault(patient.density, []).append(percent_density(pixels, geometry, threshold))
            for value in np.unique(labels):
                if 0 < value < 10:
                    mask = labels == value
                    around = breast & ~mask
                    contrast.append(float((scaled[mask].mean() - scaled[around].mean()) / (scaled[breast].std() + 1e-6)))
    bank = FilterBank()
    (a, b), gen = [np.stack(real_sets[k])[:, None] for k in sorted(real_sets)], np.stack(generated)[:, None]
    ref = np.concatenate([a, b])
    fa, fb, fg, fr = (bank.features(np.repeat(x, 3, axis=1)) for x in (a, b, gen, ref))
    _, za, zb, zg = standardise(fr, fa, fb, fg)
    floor = frechet_distance(za, zb)
    distance = 0.5 * (frechet_distance(zg, za) + frechet_distance(zg, zb))
    report = {
        "target": "breast/mammography",
        "renderer": "teacher",
        "patients": n_patients,
        "patches": {"generated": len(generated), **{k: len(v) for k, v in real_sets.items()}},
        "frechet_generated_vs_real": distance,
        "frechet_real_vs_real_floor": floor,
        "ms_ssim_generated": intra_set_ms_ssim(gen[:, 0], rng),
        "ms_ssim_real": intra_set_ms_ssim(ref[:, 0], rng),
        "percent_density_by_class": {k: [float(np.mean(v)), len(v)] for k, v in sorted(density.items())},
        "mass_contrast_sd": float(np.mean(contrast)) if contrast else None,
    }
    if request.montage:
        _montage(Path(request.montage), [p for k in sorted(real_sets) for p in real_sets[k][:4]], generated[:8])
    if request.out:
        Path(request.out).write_text(json.dumps(report, indent=2) + "\n")
    if request.card:
        update_card(Path(request.card), report)
    return report


def _montage(path: Path, real: list[np.ndarray], generated: list[np.ndarray]) -> None:
    from synthpacs.generation.images import montage

    def row(items):
        return [(np.clip(p, 0, 1) * 255).astype(np.uint8) for p in items]

    image = montage([row(real[:8]), row(generated[:8])], captions=[["real"] * 8, ["generated"] * 8])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    rows = [
        (
            "texture Fréchet distance (filter bank), to the real patches",
            f"{report['frechet_generated_vs_real']:.1f}",
            f"floor {report['frechet_real_vs_real_floor']:.1f} (patient vs patient)",
        ),
        (
            "diversity: MS-SSIM of random patch pairs (lower: more diverse)",
            f"{report['ms_ssim_generated']:.3f}",
            f"{report['ms_ssim_real']:.3f}",
        ),
    ]
    for density, (share, n) in report["percent_density_by_class"].items():
        rows.append(
            (
                f"area percent density (CC, half-glandular threshold), BI-RADS {density}, {n} breasts",
                f"{100 * share:.0f} %",
                f"BI-RADS 4th-edition band {AREA_BANDS[density]}",
            )
        )
    if report["mass_contrast_sd"] is not None:
        rows.append(("mass contrast inside the SEG (breast SDs)", f"{report['mass_contrast_sd']:.2f}", ""))
    return rows


def update_card(card: Path, report: dict) -> None:
    from tabulate import tabulate

    table = tabulate(summary_rows(report), headers=list(SUMMARY_HEADERS), tablefmt="github")
    block = (
        f"Measured by `synthpacs evaluate breast/mammography` ({report['patients']} synthetic patients, "
        f"{report['patches']['generated']} generated and {report['patches'].get('benign', 0) + report['patches'].get('malignant', 0)} real "
        f"patches of {PATCH_MM} mm):\n\n{table}"
    )
    update_card_block(card, block)
