"""Procedural scene backdrops from a stage description, and placing a presenter into them."""

import logging
import re
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from gpu_worker.media.faces import Box
from gpu_worker.media.presenter import frame_portrait

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]


Layer = tuple[RGB, float, float, str]
"""A terrain band: colour, base height and amplitude (fractions of the height), shape."""


@dataclass(frozen=True)
class _Theme:
    sky_top: RGB
    sky_bottom: RGB
    layers: tuple[Layer, ...]  # far to near
    glow: RGB | None = None  # sun or moon colour
    stars: bool = False
    bokeh: bool = False


_THEMES: list[tuple[frozenset[str], _Theme]] = [
    (
        frozenset("night space star stars galaxy moon cosmos universe planet planets astronaut rocket orbit".split()),
        _Theme(
            (8, 12, 40),
            (52, 48, 112),
            (((38, 38, 84), 0.62, 0.12, "peaks"), ((20, 22, 52), 0.78, 0.05, "hills")),
            glow=(235, 235, 255),
            stars=True,
        ),
    ),
    (
        frozenset("ocean sea beach water waves wave coast island lake river boat sailing surf".split()),
        _Theme(
            (64, 146, 222),
            (220, 240, 252),
            (
                ((40, 110, 170), 0.62, 0.003, "waves"),
                ((70, 150, 200), 0.72, 0.006, "waves"),
                ((232, 208, 160), 0.84, 0.025, "dunes"),
            ),
            glow=(255, 244, 214),
        ),
    ),
    (
        frozenset("forest tree trees jungle nature garden park mountain mountains meadow spring farm hiking".split()),
        _Theme(
            (112, 180, 235),
            (226, 243, 250),
            (
                ((150, 180, 200), 0.55, 0.12, "peaks"),
                ((70, 140, 90), 0.7, 0.04, "trees"),
                ((40, 100, 60), 0.84, 0.03, "hills"),
            ),
            glow=(255, 248, 220),
        ),
    ),
    (
        frozenset("desert sand sun summer heat dune dunes egypt safari".split()),
        _Theme(
            (245, 160, 70),
            (255, 228, 165),
            (((226, 160, 96), 0.68, 0.05, "dunes"), ((200, 124, 64), 0.8, 0.05, "dunes")),
            glow=(255, 250, 225),
        ),
    ),
    (
        frozenset("sunset evening dusk autumn fall cozy fire warm".split()),
        _Theme(
            (110, 64, 140),
            (255, 164, 112),
            (((150, 80, 120), 0.66, 0.06, "hills"), ((70, 40, 80), 0.8, 0.04, "hills")),
            glow=(255, 222, 160),
        ),
    ),
    (
        frozenset("snow winter ice arctic cold christmas frozen".split()),
        _Theme(
            (160, 194, 228),
            (245, 250, 255),
            (((205, 220, 238), 0.6, 0.12, "peaks"), ((236, 242, 250), 0.78, 0.04, "hills")),
            glow=(255, 255, 255),
        ),
    ),
    (
        frozenset("city office street tech studio computer ai robot data news business startup code software".split()),
        _Theme(
            (22, 30, 62),
            (80, 104, 150),
            (((52, 64, 104), 0.62, 0.08, "skyline"), ((24, 30, 56), 0.74, 0.1, "skyline")),
            bokeh=True,
        ),
    ),
]


def _theme_for(stage: str, rng: np.random.Generator) -> _Theme:
    words = set(re.findall(r"[a-z]+", stage.lower()))
    scores = [len(words & keys) for keys, _ in _THEMES]
    if max(scores) > 0:
        return _THEMES[int(np.argmax(scores))][1]
    hue = rng.random()
    top, bottom = _hsv(hue, 0.55, 0.42), _hsv(hue + 0.08, 0.22, 0.96)
    ground = _hsv(hue - 0.04, 0.45, 0.32)
    return _Theme(
        top, bottom, ((_mix(bottom, ground, 0.45), 0.68, 0.05, "hills"), (ground, 0.8, 0.04, "hills")), bokeh=True
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    rgb = Image.new("HSV", (1, 1), (int(h % 1.0 * 255), int(s * 255), int(v * 255))).convert("RGB")
    r, g, b = rgb.getpixel((0, 0))  # type: ignore[misc]
    return int(r), int(g), int(b)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _sky(size: tuple[int, int], theme: _Theme, sun: tuple[float, float]) -> np.ndarray:
    w, h = size
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None] ** 0.8
    sky = np.asarray(theme.sky_top, np.float32) * (1 - t) + np.asarray(theme.sky_bottom, np.float32) * t
    sky = np.broadcast_to(sky, (h, w, 3)).copy()
    if theme.glow is not None:
        yy, xx = np.ogrid[:h, :w]
        d = np.hypot(xx - sun[0] * w, yy - sun[1] * h) / max(w, h)
        sky += np.exp(-((d / 0.22) ** 2))[..., None] * 0.45 * (np.asarray(theme.glow, np.float32) - sky)
    return sky


def _outline(w: int, h: int, layer: Layer, rng: np.random.Generator) -> list[tuple[float, float]]:
    """The polygon of one terrain band (closed along the bottom edge)."""
    _, base, amp, kind = layer
    if kind == "skyline":
        pts: list[tuple[float, float]] = []
        x = -rng.uniform(0, w * 0.05)
        while x < w:
            bw = w * rng.uniform(0.035, 0.09)
            top = h * (base - amp * rng.uniform(0.1, 1.0))
            pts += [(x, top), (x + bw, top)]
            x += bw + w * rng.uniform(0, 0.012)
            pts += [(x - w * 0.006, h * base), (x, h * base)]
        return [(0.0, float(h)), *pts, (float(w), float(h))]
    n = 24 if kind == "peaks" else 96
    xs = np.linspace(0, w, n)
    if kind == "peaks":
        ys = base - amp * rng.uniform(0.2, 1.0, n) * (np.arange(n) % 2)
    else:
        freq = {"waves": 40.0, "dunes": 1.4}.get(kind, 2.4)
        ph = rng.uniform(0, 2 * np.pi, 2)
        ys = base + amp * (np.sin(xs / w * freq * np.pi + ph[0]) + 0.5 * np.sin(xs / w * freq * 2.3 * np.pi + ph[1]))
    return [(0.0, float(h)), *zip(xs.tolist(), (ys * h).tolist(), strict=True), (float(w), float(h))]


def _paint(img: Image.Image, mask: Image.Image, color: RGB, blur: float) -> None:
    """Composite a flat colour through a blurred mask (no dark fringes, unlike blurring RGBA)."""
    layer = Image.new("RGBA", img.size, (*color, 0))
    layer.putalpha(mask.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else mask)
    img.alpha_composite(layer)


def _trees(draw: ImageDraw.ImageDraw, w: int, h: int, layer: Layer, rng: np.random.Generator) -> None:
    for x in rng.uniform(0, w, 40):
        th = h * rng.uniform(0.04, 0.09)
        base = h * (layer[1] + 0.01)
        draw.polygon([(x - th * 0.28, base), (x, base - th), (x + th * 0.28, base)], fill=255)


def _shapes(img: Image.Image, theme: _Theme, rng: np.random.Generator, sun: tuple[float, float]) -> None:
    """Stars, sun or moon, bokeh and the terrain bands, each through a soft mask."""
    w, h = img.size
    if theme.stars:
        mask = Image.new("L", img.size, 0)
        draw = ImageDraw.Draw(mask)
        for x, y, r in zip(
            rng.uniform(0, w, 220), rng.uniform(0, h * 0.65, 220), rng.uniform(0.6, 2.0, 220), strict=True
        ):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=int(110 + 145 * rng.random()))
        _paint(img, mask, (255, 255, 255), 0.8)
    if theme.glow is not None:
        mask = Image.new("L", img.size, 0)
        r, cx, cy = h * 0.07, sun[0] * w, sun[1] * h
        ImageDraw.Draw(mask).ellipse([cx - r, cy - r, cx + r, cy + r], fill=240)
        _paint(img, mask, theme.glow, h * 0.004)
    if theme.bokeh:
        mask = Image.new("L", img.size, 0)
        draw = ImageDraw.Draw(mask)
        for _ in range(16):
            r, cx, cy = h * rng.uniform(0.02, 0.1), rng.uniform(0, w), rng.uniform(0, h * 0.7)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.uniform(25, 60)))
        _paint(img, mask, _mix(theme.sky_bottom, (255, 255, 255), 0.6), h * 0.006)
    for layer in theme.layers:
        mask = Image.new("L", img.size, 0)
        draw = ImageDraw.Draw(mask)
        draw.polygon(_outline(w, h, layer, rng), fill=255)
        if layer[3] == "trees":
            _trees(draw, w, h, layer, rng)
        _paint(img, mask, layer[0], 1.2)
        if layer[3] == "skyline":
            _windows(img, mask, layer, rng)


def _windows(img: Image.Image, building: Image.Image, layer: Layer, rng: np.random.Generator) -> None:
    """Lit windows scattered over the skyline's buildings (not the street below them)."""
    w, h = img.size
    top, bottom = h * (layer[1] - layer[2]), h * (layer[1] - 0.01)
    mask = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(mask)
    ww = max(2, w // 400)
    for x, y in zip(rng.uniform(0, w, 500), rng.uniform(top, bottom, 500), strict=True):
        draw.rectangle([x, y, x + ww, y + ww * 1.5], fill=int(rng.uniform(60, 200)))
    lit = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(building)))
    _paint(img, lit, (255, 214, 140), 0.5)


def _vignette(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.ogrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    return img * (1 - 0.28 * np.clip(xx**2 * 0.6 + yy**2 * 0.8 - 0.2, 0, 1))[..., None]


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(10, px))


def _caption(img: Image.Image, text: str) -> None:
    """A small translucent pill in the top-left corner naming the scene."""
    w, h = img.size
    text = " ".join(text.split())
    text = text if len(text) <= 70 else text[:67].rsplit(" ", 1)[0] + "…"
    font = _font(int(min(w, h) * 0.03))
    x0, y0, x1, y1 = ImageDraw.Draw(img).textbbox((0, 0), text, font=font)
    pad, m = int(min(w, h) * 0.014), int(min(w, h) * 0.035)
    band = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    draw.rounded_rectangle([m, m, m + x1 - x0 + 2 * pad, m + y1 - y0 + 2 * pad], radius=pad * 2, fill=(10, 14, 30, 130))
    draw.text((m + pad - x0, m + pad - y0), text, font=font, fill=(255, 255, 255, 235))
    img.alpha_composite(band)


def render_backdrop(stage: str, size: tuple[int, int], seed: int, caption: bool = False) -> Image.Image:
    """Paint a clean backdrop for a stage description: sky, glow, soft shapes and terrain.

    Colours and terrain come from the stage's words (ocean, forest, city, night, …); the same
    stage and seed always give the same picture.

    Args:
        stage: the script's stage description.
        size: `(width, height)` in pixels.
        seed: variation seed.
        caption: also write the stage text in a small band at the top left (off for videos: a
            moving camera would crop it).

    Returns:
        An RGB image of `size`.
    """
    rng = np.random.default_rng([zlib.crc32(stage.encode()), seed])
    theme = _theme_for(stage, rng)
    sun = (float(rng.uniform(0.15, 0.45)), float(rng.uniform(0.22, 0.38)))
    sky = _sky(size, theme, sun)
    img = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)).convert("RGBA")
    _shapes(img, theme, rng, sun)
    img = Image.fromarray(
        np.clip(_vignette(np.asarray(img.convert("RGB"), np.float32)), 0, 255).astype(np.uint8)
    ).convert("RGBA")
    if caption and stage.strip():
        _caption(img, stage)
    logger.debug("backdrop %dx%d with %d terrain bands", size[0], size[1], len(theme.layers))
    return img.convert("RGB")


def compose_presenter(backdrop: Image.Image, face: Image.Image, face_box: Box | None = None) -> tuple[Image.Image, Box]:
    """Place a presenter portrait, cropped around the face, in a framed card at the lower right.

    Args:
        backdrop: the scene.
        face: the presenter portrait (any photo with a face).
        face_box: the face box in `face`, if already known (detected otherwise).

    Returns:
        The composed RGB scene and the face box in scene coordinates.
    """
    layer, box = presenter_layer(backdrop.size, face, face_box)
    scene = backdrop.convert("RGBA")
    scene.alpha_composite(layer)
    return scene.convert("RGB"), box


def presenter_layer(size: tuple[int, int], face: Image.Image, face_box: Box | None = None) -> tuple[Image.Image, Box]:
    """The presenter's framed card with its border and soft shadow, on a transparent layer of `size`.

    Composited over a backdrop it gives `compose_presenter`'s scene; a backdrop that changes every
    frame (the caller's own media) reuses the one layer.

    Args:
        size: `(width, height)` of the scene.
        face: the presenter portrait (any photo with a face).
        face_box: the face box in `face`, if already known (detected otherwise).

    Returns:
        The RGBA layer and the face box in scene coordinates.
    """
    w, h = size
    card_h = int(h * 0.64)
    card_w = int(card_h * 0.8)
    if card_w > w * 0.72:
        card_w = int(w * 0.72)
        card_h = int(card_w / 0.8)
    margin = int(min(w, h) * 0.06)
    x, y = w - card_w - margin, h - card_h - margin
    card, (fx, fy, fw, fh) = frame_portrait(face, (card_w, card_h), face_height=0.34, face_top=0.2, face=face_box)
    radius, border = int(card_h * 0.05), max(2, h // 180)
    mask = Image.new("L", (card_w, card_h), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, card_w - 1, card_h - 1], radius=radius, fill=255)
    shadow = Image.new("RGBA", size, (0, 0, 0, 0))
    off = border * 3
    ImageDraw.Draw(shadow).rounded_rectangle(
        [x + off, y + off, x + card_w + off, y + card_h + off], radius=radius, fill=(0, 0, 0, 110)
    )
    layer = shadow.filter(ImageFilter.GaussianBlur(off * 2))
    # Drawn and pasted opaque (no blending): the border and card replace the shadow under them.
    ImageDraw.Draw(layer).rounded_rectangle(
        [x - border, y - border, x + card_w + border, y + card_h + border],
        radius=radius + border,
        fill=(250, 250, 252, 255),
    )
    layer.paste(card, (x, y), mask)
    return layer, (x + fx, y + fy, fw, fh)
