"""``synthpacs generate --interpolate A,B``: a walk through a GAN's latent space, as frames or a GIF.

The two endpoints are the samples the GAN draws from seeds A and B (numpy
PCG64), on the label map of one study; every intermediate frame mixes their
latents and noise on the variance-preserving path
(:func:`synthpacs.generation.pipeline.mix`), so the first frame equals
sample A and the last equals sample B exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .images import save_gif, window


def parse_pair(text: str) -> tuple[int, int]:
    parts = [p.strip() for p in str(text).replace(":", ",").split(",")]
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--interpolate expects two integer seeds SEED_A,SEED_B, got {text!r}") from None
    if min(a, b) < 0:
        raise ConfigError(f"--interpolate seeds must be non-negative, got {text!r}")
    return a, b


def write_interpolation(
    config,
    study_uid: str,
    out: Path,
    pair: str,
    frames: int,
    slice_choice: str = "lesion",
    plane: str = "axial",
    display_window: str | None = None,
    fps: float = 8.0,
) -> str:
    """Render and write the frames; returns a description of what was written.

    Raises
    ------
    ConfigError
        Bad seeds or slice, or a renderer without a latent space (the teacher).
    NotFound
        No such study.
    """
    from ..archive import Archive

    seed_a, seed_b = parse_pair(pair)
    archive = Archive(config)
    request = archive.study_request(study_uid)
    target = archive.targets[request.study.target]
    if target.interpolation is None:
        raise ConfigError(f"--interpolate: {target.name} has no latent space to walk")
    windows = dict(target.interpolation.display_windows)  # none: the target draws its frames itself
    name = display_window or next(iter(windows), "")
    if windows and name not in windows or display_window and not windows:
        raise ConfigError(f"--window {name!r}: {target.name} offers {', '.join(windows) or 'no display windows'}")
    generator = archive.generator(target.name)
    try:
        hu_frames = target.interpolation.interpolation_frames(
            generator, request, seed_a, seed_b, frames, slice_choice=slice_choice, plane=plane
        )
    except ConfigError as exc:
        source = config.sources.get("renderer", "default")
        raise ConfigError(f"{exc} (renderer {config.renderer or 'default'!r} from {source})") from None
    images = [window(f, windows[name]) for f in hu_frames] if windows else [np.asarray(f, dtype=np.uint8) for f in hu_frames]
    if out.suffix.lower() == ".gif":
        save_gif(images, out, fps=fps)
        return f"{len(images)}-frame GIF {out} (seed {seed_a} -> {seed_b})"
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(out / f"frame_{i:03d}.png")
    return f"{len(images)} PNG frames in {out} (seed {seed_a} -> {seed_b})"
