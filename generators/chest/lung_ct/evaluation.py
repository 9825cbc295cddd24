"""Measuring the lung-CT GAN against its teacher: ``synthpacs evaluate lung-ct``.

Two disjoint sets of label volumes, X and Y (fresh chests from seed streams
that training never uses, on ``rows`` x ``rows`` grids at
``slice_spacing_mm``), are rendered by the teacher (X and Y) and by the GAN
(X). Every number compares the GAN with the teacher on the same labels:

fidelity
    Fréchet distance on the shipped filter bank
    (:class:`synthpacs.generation.evaluate.FilterBank`, three display windows)
    between GAN(X) and teacher(Y), next to the floor teacher(X) vs teacher(Y)
    (the same labels on the left, so the gap is the renderer's alone); once
    on axial slices and once on coronal reformats (MPR).
diversity
    intra-set MS-SSIM of axial slices (lower: more diverse) for GAN(X) and
    teacher(X); and conditional diversity, the mean absolute difference of
    the low-passed (sigma 2 px) images rendered twice from the same labels
    with two seeds (study-to-study calibration, noise excluded).
plausibility
    mean HU per label away from tissue boundaries, with the ranges of the
    foundation issue (air about -1000, lung -900..-700, fat -120..-60, soft
    tissue 0..80, bone above 300, tumour 20..60); noise (SD in muscle).
mask agreement
    tumour contrast: mean HU inside the lesion labels (the SEG) minus the
    mean HU of the lung in a 3-pixel ring around them, and the contrast to
    noise ratio.
coherence
    banding: mean absolute change of the mean lung HU from one slice to the
    next (MPR stripes would raise it above the teacher's).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from synthpacs.generation.evaluate import (
    EvaluationRequest,
    FilterBank,
    frechet_distance,
    intra_set_ms_ssim,
    standardise,
    update_card_block,
)

from .geometry import CTGrid, Label
from .target import LUNG_WINDOW, MEDIASTINUM_WINDOW
from .teacher import render_hu
from .training import DEFAULTS, teacher_volume

log = logging.getLogger(__name__)

#: Mean HU per label away from boundaries (foundation issue; tests/test_lung_ct_geometry.py).
HU_RANGES = {
    "AIR": (-1024, -950),
    "LUNG": (-900, -700),
    "AIRWAY": (-1024, -900),
    "FAT": (-120, -60),
    "MUSCLE": (0, 80),
    "SOFT_TISSUE": (0, 80),
    "MEDIASTINUM": (0, 80),
    "HEART": (0, 80),
    "VESSEL": (0, 80),
    "BONE": (300, 3071),
    "RIB": (300, 3071),
    "STERNUM": (300, 3071),
    "TUMOUR": (20, 60),
    "TABLE": (-200, 100),
}
FEATURE_WINDOWS = (LUNG_WINDOW, MEDIASTINUM_WINDOW, (400.0, 1800.0))


def _core(mask: np.ndarray) -> np.ndarray:
    core = ndimage.binary_erosion(mask, structure=np.ones((3, 5, 5), bool))
    if core.sum() < 30:  # thin in z: erode in plane only
        core = ndimage.binary_erosion(mask, structure=np.ones((1, 5, 5), bool))
    return core


def label_mask(labels: np.ndarray, name: str) -> np.ndarray:
    return labels >= int(Label.TUMOUR) if name == "TUMOUR" else labels == int(Label[name])


def hu_by_label(hu: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean HU per label inside its core (5x5 in plane and 3 slices eroded); labels too thin are left out."""
    out = {}
    for name in HU_RANGES:
        core = _core(label_mask(labels, name))
        if core.sum() >= 30:
            out[name] = float(hu[core].mean())
    return out


def tumour_contrast(hu: np.ndarray, labels: np.ndarray) -> dict[str, float] | None:
    """Lesion (SEG) mean HU, surrounding-lung mean HU, their difference and the contrast-to-noise ratio."""
    tumour = labels >= int(Label.TUMOUR)
    if tumour.sum() < 10:
        return None
    ring_xy = np.ones((1, 7, 7), bool)
    ring = ndimage.binary_dilation(tumour, structure=ring_xy) & ~tumour & (labels == Label.LUNG)
    if ring.sum() < 10:
        return None
    inside, around = hu[tumour].astype(np.float64), hu[ring].astype(np.float64)
    noise = float(np.sqrt(0.5 * (inside.var() + around.var())))
    return {
        "tumour_hu": float(inside.mean()),
        "lung_hu": float(around.mean()),
        "contrast_hu": float(inside.mean() - around.mean()),
        "cnr": float((inside.mean() - around.mean()) / max(noise, 1e-3)),
    }


def muscle_noise(hu: np.ndarray, labels: np.ndarray) -> float:
    core = _core(labels == Label.MUSCLE)
    return float(hu[core].std()) if core.sum() >= 30 else float("nan")


def banding(hu: np.ndarray, labels: np.ndarray) -> float:
    """Mean |change| of the mean lung HU between adjacent slices (slices with enough lung)."""
    means = []
    for k in range(hu.shape[0]):
        lung = labels[k] == Label.LUNG
        means.append(hu[k][lung].mean() if lung.sum() > 500 else np.nan)
    d = np.abs(np.diff(np.array(means)))
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def windowed(hu: np.ndarray) -> np.ndarray:
    """(N, H, W) HU -> (N, 3, H, W) in [0, 1] through the feature windows."""
    chans = []
    for centre, width in FEATURE_WINDOWS:
        chans.append(np.clip((hu.astype(np.float32) - (centre - width / 2)) / width, 0.0, 1.0))
    return np.stack(chans, axis=1)


def coronal(volume: np.ndarray, every: int) -> list[np.ndarray]:
    """Coronal reformats (every ``every``-th row through the middle half), resampled to columns x columns.

    Each plane is stretched to a square so that planes of chests of different
    lengths stack; the filter bank sees every set the same way.
    """
    from PIL import Image

    K, R, C = volume.shape
    return [
        np.asarray(Image.fromarray(volume[:, r, :].astype(np.float32)).resize((C, C), Image.Resampling.BILINEAR))
        for r in range(R // 4, 3 * R // 4, every)
    ]


def _eval_volumes(request: EvaluationRequest, stream: int, count: int):
    rng = np.random.Generator(np.random.PCG64([request.seed, 0xE7A1, stream]))
    hp = dict(DEFAULTS)
    rows = int(request.rows)
    hp.update(resolutions={str(rows): 1.0}, thicknesses=[float(request.slice_spacing_mm)], max_slices={str(rows): 10_000})
    return [teacher_volume(rng, hp, f"eval-{stream}-{i}") for i in range(count)]


def evaluate(request: EvaluationRequest, pipeline=None) -> dict:
    """Run the evaluation; returns the report (and writes ``request.out`` / the model card's block when asked)."""
    from tqdm import tqdm

    from .target import load_pipeline

    started = time.time()
    if pipeline is None:
        pipeline = load_pipeline(request.weights, request.device, request.psi, 8, request.weights_source, request.device_source)
    n = int(request.volumes)
    bar = tqdm(total=3 * n, desc="evaluate lung-ct", unit="vol", disable=not request.progress)
    set_x = _eval_volumes(request, 1, n)
    bar.update(n)
    set_y = _eval_volumes(request, 2, n)
    bar.update(n)
    gan, gan2, teacher2 = [], [], []
    gan_seconds = 0.0
    for i, v in enumerate(set_x):
        t = time.perf_counter()
        gan.append(
            pipeline(
                v.labels, v.pixel_spacing_mm, v.slice_spacing_mm, rng=np.random.Generator(np.random.PCG64([request.seed, 1, i]))
            )
        )
        gan_seconds += time.perf_counter() - t
        gan2.append(
            pipeline(
                v.labels, v.pixel_spacing_mm, v.slice_spacing_mm, rng=np.random.Generator(np.random.PCG64([request.seed, 2, i]))
            )
        )
        grid = CTGrid(
            rows=v.labels.shape[1],
            columns=v.labels.shape[2],
            n_slices=v.labels.shape[0],
            pixel_spacing_mm=v.pixel_spacing_mm,
            slice_spacing_mm=v.slice_spacing_mm,
        )
        teacher2.append(render_hu(v.labels, grid, np.random.Generator(np.random.PCG64([request.seed, 3, i]))))
        bar.update(1)
    bar.close()
    slices = sum(v.labels.shape[0] for v in set_x)
    report = {
        "request": request.as_json(),
        "weights": pipeline.source,
        "weights_sha256": pipeline.record.get("weights_sha256"),
        "grid": f"{request.rows}x{request.rows}, {request.slice_spacing_mm:g} mm",
        "volumes_per_set": n,
        "slices_per_set": slices,
        "psi": pipeline.psi,
    }

    # Fidelity: axial and coronal.
    bank = FilterBank()
    t_x = np.concatenate([v.hu for v in set_x])
    t_y = np.concatenate([v.hu for v in set_y])
    g_x = np.concatenate(gan)
    f_ty, f_tx, f_gx = standardise(*(bank.features(windowed(a)) for a in (t_y, t_x, g_x)))
    every = max(1, request.rows // 32)

    def cor(volumes):
        return np.stack([plane for v in volumes for plane in coronal(v, every)])

    fc_ty, fc_tx, fc_gx = standardise(
        *(bank.features(windowed(cor(vols))) for vols in ([v.hu for v in set_y], [v.hu for v in set_x], gan))
    )
    report["fd_axial"] = {"gan_vs_teacher": frechet_distance(f_gx, f_ty), "teacher_floor": frechet_distance(f_tx, f_ty)}
    report["fd_coronal"] = {"gan_vs_teacher": frechet_distance(fc_gx, fc_ty), "teacher_floor": frechet_distance(fc_tx, fc_ty)}

    # Diversity.
    rng = np.random.Generator(np.random.PCG64([request.seed, 0xD1]))
    lung_w = lambda a: np.clip((a.astype(np.float32) + 1350.0) / 1500.0, 0, 1)  # noqa: E731 (lung window in [0, 1])
    report["intra_ms_ssim"] = {"gan": intra_set_ms_ssim(lung_w(g_x), rng), "teacher": intra_set_ms_ssim(lung_w(t_x), rng)}

    def conditional(a_list, b_list):
        diffs = []
        for a, b, v in zip(a_list, b_list, set_x):
            body = v.labels != Label.AIR
            la = ndimage.gaussian_filter(a.astype(np.float32), (0, 2, 2))
            lb = ndimage.gaussian_filter(b.astype(np.float32), (0, 2, 2))
            diffs.append(np.abs(la - lb)[body].mean())
        return float(np.mean(diffs))

    report["conditional_diversity_hu"] = {"gan": conditional(gan, gan2), "teacher": conditional([v.hu for v in set_x], teacher2)}

    # Plausibility, mask agreement, coherence.
    labels_x = np.concatenate([v.labels for v in set_x])
    hu_gan, hu_teacher = hu_by_label(g_x, labels_x), hu_by_label(t_x, labels_x)
    report["hu_by_label"] = {
        name: {
            "gan": round(hu_gan[name], 1),
            "teacher": round(hu_teacher.get(name, float("nan")), 1),
            "range": list(rng_),
            "ok": bool(rng_[0] <= hu_gan[name] <= rng_[1]),
        }
        for name, rng_ in HU_RANGES.items()
        if name in hu_gan
    }
    report["noise_sd_muscle"] = {"gan": muscle_noise(g_x, labels_x), "teacher": muscle_noise(t_x, labels_x)}
    contrasts: dict[str, list[dict[str, float]]] = {"gan": [], "teacher": []}
    for v, g in zip(set_x, gan):
        for key, hu in (("gan", g), ("teacher", v.hu)):
            c = tumour_contrast(hu, v.labels)
            if c:
                contrasts[key].append(c)
    report["tumour"] = {
        key: {k: float(np.mean([c[k] for c in rows])) for k in ("tumour_hu", "lung_hu", "contrast_hu", "cnr")}
        for key, rows in contrasts.items()
        if rows
    }
    report["banding_hu"] = {
        "gan": float(np.nanmean([banding(g, v.labels) for g, v in zip(gan, set_x)])),
        "teacher": float(np.nanmean([banding(v.hu, v.labels) for v in set_x])),
    }
    report["gan_seconds_per_slice"] = gan_seconds / max(slices, 1)
    report["wall_s"] = time.time() - started
    if request.out:
        Path(request.out).write_text(json.dumps(report, indent=2) + "\n")
    if request.card:
        update_card(Path(request.card), report)
    if request.montage:
        comparison_montage(pipeline, Path(request.montage))
    return report


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    """(quantity, GAN, teacher) rows for a table."""
    r = report
    rows = [
        (
            "Fréchet distance, axial (filter bank)",
            f"{r['fd_axial']['gan_vs_teacher']:.3f}",
            f"{r['fd_axial']['teacher_floor']:.3f} (floor)",
        ),
        (
            "Fréchet distance, coronal MPR",
            f"{r['fd_coronal']['gan_vs_teacher']:.3f}",
            f"{r['fd_coronal']['teacher_floor']:.3f} (floor)",
        ),
        ("intra-set MS-SSIM (lower: more diverse)", f"{r['intra_ms_ssim']['gan']:.3f}", f"{r['intra_ms_ssim']['teacher']:.3f}"),
        (
            "conditional diversity, same labels (HU)",
            f"{r['conditional_diversity_hu']['gan']:.1f}",
            f"{r['conditional_diversity_hu']['teacher']:.1f}",
        ),
    ]
    for name, row in r["hu_by_label"].items():
        lo, hi = row["range"]
        rows.append(
            (
                f"HU {name.lower()} ({lo}..{hi})",
                f"{row['gan']:.0f}{'' if row['ok'] else ' (out of range)'}",
                f"{row['teacher']:.0f}",
            )
        )
    rows.append(("noise SD in muscle (HU)", f"{r['noise_sd_muscle']['gan']:.1f}", f"{r['noise_sd_muscle']['teacher']:.1f}"))
    if "gan" in r["tumour"]:
        g, t = r["tumour"]["gan"], r["tumour"].get("teacher", {})
        rows.append(
            ("tumour - lung contrast in SEG (HU)", f"{g['contrast_hu']:.0f}", f"{t.get('contrast_hu', float('nan')):.0f}")
        )
        rows.append(("tumour CNR", f"{g['cnr']:.1f}", f"{t.get('cnr', float('nan')):.1f}"))
    rows.append(("banding: slice-to-slice lung HU change", f"{r['banding_hu']['gan']:.2f}", f"{r['banding_hu']['teacher']:.2f}"))
    return rows


def update_card(card: Path, report: dict) -> None:
    """Rewrite the block between the evaluation markers of MODEL_CARD.md with this report's table."""
    from tabulate import tabulate

    table = tabulate(summary_rows(report), headers=["quantity", "GAN", "teacher"], tablefmt="github")
    block = (
        f"Measured by `synthpacs evaluate lung-ct` ({report['volumes_per_set']} volumes and "
        f"{report['slices_per_set']} slices per set, {report['grid']}, psi {report['psi']:g}, weights "
        f"`{str(report.get('weights_sha256'))[:16]}`):\n\n{table}"
    )
    update_card_block(card, block)


def comparison_montage(pipeline, out: Path, seed: int = 20250101, patient: int = 0) -> Path:
    """Teacher | GAN on one study of the default universe, as the server would make it (both renderers).

    Rows: axial slice through the largest lesion (lung window), the same in
    the mediastinal window, a 4x zoom on the lesion (noise texture and edges,
    mediastinal window), and a coronal reformat through the lesion (MPR
    coherence).
    """
    import tempfile

    from synthpacs.archive import Archive
    from synthpacs.archive.records import patient_id
    from synthpacs.config import load_config
    from synthpacs.generation.images import montage, window

    from .target import GANLungCT, LungCTGenerator, _teacher, coronal_plane

    with tempfile.TemporaryDirectory() as data_dir:
        flags = {"seed": seed, "patients": max(patient + 1, 1000), "data_dir": data_dir, "renderer": "teacher"}
        archive = Archive(load_config(flags=flags, environ={}))
        baseline = next(archive.find("STUDY", {"PatientID": patient_id(patient), "StudyID": "V00"}))
        request = archive.study_request(str(baseline.StudyInstanceUID))
        archive.close()
    teacher, gan = LungCTGenerator("teacher", _teacher, "render", "teacher"), GANLungCT(pipeline, "gan")
    geometry = teacher.geometry(request)
    t = teacher.hu(geometry, request)
    g = gan.hu(geometry, request)
    grid = geometry.grid
    measured = [f for f in geometry.lesions if f.slice is not None]
    lesion = max(measured, key=lambda f: f.diameter_mm) if measured else None
    points = lesion.points if lesion else None
    if lesion and points is None:
        raise ValueError(f"{lesion.tracking_id} has a slice but no end points")
    k = lesion.slice if lesion else grid.n_slices // 2
    r0, c0 = np.mean(points, axis=0).astype(int) if points is not None else (grid.rows // 2, grid.columns // 2)
    half = grid.rows // 8
    r0, c0 = int(np.clip(r0, half, grid.rows - half)), int(np.clip(c0, half, grid.columns - half))
    size = grid.rows

    def zoom(volume):  # a quarter of the field of view, 4x (nearest neighbour: the pixels as they are)
        from PIL import Image

        tile = window(volume[k, r0 - half : r0 + half, c0 - half : c0 + half], MEDIASTINUM_WINDOW)
        return np.asarray(Image.fromarray(tile).resize((size, size), Image.NEAREST))

    def cor(volume):
        return window(coronal_plane(volume, r0, grid.pixel_spacing_mm, grid.slice_spacing_mm), LUNG_WINDOW)

    rows = [
        [window(t[k], LUNG_WINDOW), window(g[k], LUNG_WINDOW)],
        [window(t[k], MEDIASTINUM_WINDOW), window(g[k], MEDIASTINUM_WINDOW)],
        [zoom(t), zoom(g)],
        [cor(t), cor(g)],
    ]
    what = f"{grid.rows}x{grid.columns}, {grid.slice_spacing_mm:g} mm"
    captions = [
        [f"teacher  axial {k}  lung window  ({what})", f"GAN  axial {k}  lung window"],
        ["teacher  mediastinal window", "GAN  mediastinal window"],
        ["teacher  4x zoom, mediastinal window", "GAN  4x zoom, mediastinal window"],
        ["teacher  coronal reformat", "GAN  coronal reformat"],
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    montage(rows, captions=captions).save(out, optimize=True)
    return out
