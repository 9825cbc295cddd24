"""Montage of one subject's baseline and follow-up CT as the archive serves them.

    python tools/subject_montage.py docs/lung_ct_montage.png [--renderer teacher|gan] [--patient N]

Rows: baseline and the last follow-up; columns: axial slices through each target
lesion (lung window, lesion outline from the SEG), a mediastinal-window slice and a
coronal reformat. Uses the default cohort (512x512) of a 60-patient universe.
"""

from __future__ import annotations

import argparse
import io
import tempfile

import numpy as np
from PIL import Image, ImageDraw
from pydicom import dcmread

from synthpacs.archive import Archive
from synthpacs.config import load_config


def window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    low = center - width / 2
    return (np.clip((hu - low) / width, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--renderer", default="teacher")
    parser.add_argument("--patient", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive(
            load_config(None, {"patients": 60, "seed": args.seed, "data_dir": tmp, "renderer": args.renderer}, environ={})
        )
        u = archive._universe
        index = args.patient
        if index is None:  # a subject with two lesions whose size changed (PR or PD), for a telling picture
            index = next(
                p
                for p in range(u.n_patients)
                if u.patient(p).n_lesions >= 2 and u.patient(p).response in ("PR", "PD") and u.patient(p).n_visits >= 3
            )
        studies = u.studies_of(index)
        rows = []
        for study in (studies[0], studies[-1]):
            refs = archive.instances(study.study_instance_uid)
            data = {r.sop_instance_uid: dcmread(io.BytesIO(archive.instance_bytes(r))) for r in refs}
            ct = sorted((d for d in data.values() if d.Modality == "CT"), key=lambda d: int(d.InstanceNumber))
            seg = next(d for d in data.values() if d.Modality == "SEG")
            hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ct])
            position = {d.SOPInstanceUID: k for k, d in enumerate(ct)}
            masks = np.zeros(hu.shape, bool)
            frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns) if int(seg.NumberOfFrames) else []
            for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
                k = position[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
                masks[k] |= frames[f].astype(bool)
            lesion_slices = [int(np.argmax(masks.sum(axis=(1, 2))))] if masks.any() else [len(ct) // 2]
            tiles = []
            for k in lesion_slices + [len(ct) // 2]:
                tile = Image.fromarray(window(hu[k], -600, 1500)).convert("RGB")
                edge = masks[k] & ~np.roll(masks[k], 1, 0) | masks[k] & ~np.roll(masks[k], 1, 1)
                arr = np.array(tile)
                arr[edge] = (255, 60, 60)
                tiles.append(Image.fromarray(arr))
            tiles.append(Image.fromarray(window(hu[len(ct) // 2], 40, 400)).convert("RGB"))
            coronal = window(hu[:, hu.shape[1] // 2 + 20, :], -600, 1500)
            # Square pixels: the slice spacing and pixel spacing the served CT carries.
            ratio = float(ct[0].SpacingBetweenSlices) / float(ct[0].PixelSpacing[1])
            coronal_img = Image.fromarray(coronal).resize((hu.shape[2], int(hu.shape[0] * ratio)))
            coronal_img.thumbnail((512, 512))
            square = Image.new("RGB", (512, 512))
            square.paste(coronal_img.convert("RGB"), ((512 - coronal_img.width) // 2, (512 - coronal_img.height) // 2))
            tiles.append(square)
            row = Image.new("RGB", (512 * len(tiles), 540), (20, 20, 20))
            for i, tile in enumerate(tiles):
                row.paste(tile.resize((512, 512)), (512 * i, 28))
            ImageDraw.Draw(row).text(
                (8, 6),
                f"{study.patient.patient_name}  {study.time_point_description} ({study.study_date})"
                f"  target lesions: {', '.join(f'{d:g} mm' for d in study.lesion_diameters_mm)}"
                f"  [{study.patient.response} course, {args.renderer}]",
                fill=(255, 255, 0),
            )
            rows.append(row)
        out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)))
        for i, row in enumerate(rows):
            out.paste(row, (0, i * row.height))
        out = out.resize((out.width // 2, out.height // 2), Image.LANCZOS)
        out.save(args.out)
        print(f"wrote {args.out}: patient {index}, {len(studies)} visits")


if __name__ == "__main__":
    main()
