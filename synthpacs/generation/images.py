"""Pictures of generator output: windowed 8-bit images, montages, animated GIFs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def window(hu: np.ndarray, centre_width: tuple[float, float]) -> np.ndarray:
    """Values (HU for CT) -> uint8 through a linear display window (centre, width)."""
    centre, width = centre_width
    low = centre - width / 2.0
    scaled = (np.asarray(hu, np.float32) - low) / width * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an 8-bit image (PIL)."""
    from PIL import Image

    if image.shape == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def montage(rows: Sequence[Sequence[np.ndarray]], gap: int = 4, captions: Sequence[Sequence[str]] | None = None):
    """A grid of 8-bit images (each row's images side by side); returns a PIL image.

    ``captions`` (one string per image, same nesting as ``rows``) are drawn
    in the top-left corner of each tile.
    """
    from PIL import Image, ImageDraw

    n_cols = max(len(r) for r in rows)
    heights = [max(im.shape[0] for im in r) for r in rows]
    widths = [max(r[c].shape[1] for r in rows if c < len(r)) for c in range(n_cols)]
    canvas = Image.new("L", (sum(widths) + gap * (n_cols + 1), sum(heights) + gap * (len(rows) + 1)), 0)
    draw = ImageDraw.Draw(canvas)
    y = gap
    for i, row in enumerate(rows):
        x = gap
        for c, im in enumerate(row):
            canvas.paste(Image.fromarray(np.ascontiguousarray(im)), (x, y))
            if captions and captions[i][c]:
                box = draw.textbbox((x + 6, y + 6), captions[i][c])
                draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=0)
                draw.text((x + 6, y + 6), captions[i][c], fill=255)
            x += widths[c] + gap
        y += heights[i] + gap
    return canvas


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 8.0, bounce: bool = True) -> Path:
    """An animated GIF of 8-bit frames (forward then back when ``bounce``), looping."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    if bounce and len(images) > 2:
        images = images + images[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=False)
    return path
