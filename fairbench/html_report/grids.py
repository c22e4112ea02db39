"""The page's sample grids: the PNG files `fairbench.figures.sample_grid` wrote under
``DIR/figures``, shown at their own size (every sample pixel an exact block, no smoothing)
and captioned, band by band, with the request and what the judge saw (text the PNG carries)."""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from ..figures import grid_filename
from .table import escape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when `data` is not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def captions(data: bytes) -> tuple[str, list[str]]:
    """(title, one caption per band) from the PNG text that `sample_grid` wrote; empty when absent."""
    try:
        text = Image.open(io.BytesIO(data)).text
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "", []  # shown without captions; the picture is embedded as it is
    return text.get("Title", ""), [line for line in text.get("Description", "").splitlines() if line.strip()]


def grids_html(labels: Sequence[str], directory: Path | None, *, source: Callable[[str, bytes], str] | None = None) -> str:
    """Sample grids ``DIR/figures/<grid_filename(label)>``, embedded as data URIs when they are PNG files.

    Each is shown at the PNG's own pixel size (``width``/``height`` set, ``image-rendering:
    pixelated``) and captioned with the lines drawn above its bands (request, final value, judged
    distribution), read from the PNG's text. `source(label, data)` gives the image's address
    instead of a data URI (a site that copies the PNG files beside its pages).
    """
    figures = []
    if directory is not None:
        for label in labels:
            path = Path(directory) / "figures" / grid_filename(label)
            if not path.is_file():
                continue
            data = path.read_bytes()
            size = png_size(data)
            if size is None:
                continue  # only PNG is embedded; anything else under that name is not a grid
            uri = source(label, data) if source else "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            title, lines = captions(data)
            bands = "".join(f"<li>{escape(line)}</li>" for line in lines)
            figures.append(
                f'<figure class="grid" data-method="{escape(label)}"><div class="scroll-x"><img src="{uri}" '
                f'width="{size[0]}" height="{size[1]}" alt="{escape(f"samples of {label}, one band per requested value")}">'
                f"</div><figcaption>{escape(title or label)}"
                + (f'<ul class="bands">{bands}</ul>' if bands else "") + "</figcaption></figure>"
            )
    if figures:
        return "".join(figures)
    example = grid_filename(labels[0]) if labels else "<label>.png"
    return f"<p>No sample grids in this directory (a method's grid is the PNG named like <code>{escape(example)}</code>).</p>"
