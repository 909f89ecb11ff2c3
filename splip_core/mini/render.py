"""Rasterising emoji artwork and turning it into sketches and photos, as batched, seeded torch operations.

The same functions render the stored world (one seeded generator per file, 112 px) and the CLIP pretraining
batches (64 px, on the fly), so "photo" and "sketch" mean the same thing in both places:
- photo: a colour artwork, randomly scaled, rotated, shifted and flipped, composited on a random background
  (gradient, noise texture, stripes, clutter of shapes, or plain) and colour-jittered, so that the background
  never tells the concept or the domain;
- sketch: black ink on white, drawn the way a visitor draws on the demo canvas: a line or outline icon with its
  stroke width varied, a hand wobble (smooth warp), small gaps in the strokes, then cropped to its ink like the
  demo crops a canvas. The optional pretraining "sketchification" is an edge map (Sobel on luminance and alpha)
  of a colour artwork, with the same line augmentation.
Tensors are float in [0, 1]; RGBA art is (N, 4, H, W) with premultiplied colour.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FIT = 0.84  # fraction of the canvas the artwork's longer side fills after `rasterize` re-centres it
_STROKE = re.compile(r'stroke-width="([0-9.]+)"')


def rasterize(data: bytes, size: int, svg: bool = True, stroke_scale: float = 1.0, ink: bool = False) -> np.ndarray:
    """(size, size, 4) uint8 RGBA of an SVG (via cairosvg) or raster artwork, cropped to its ink and re-centred.

    `stroke_scale` multiplies every `stroke-width` of an SVG (the thickness augmentation of line drawings).
    Re-centring makes the packages' different margins comparable. `ink` paints every `currentColor` black (the
    colour line icon sets leave to the page).
    """
    if svg:
        import cairosvg

        text = data.decode()
        if ink:
            text = text.replace("currentColor", "#000")
        if stroke_scale != 1.0:
            text = _STROKE.sub(lambda m: f'stroke-width="{float(m.group(1)) * stroke_scale:.3f}"', text)
        big = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=text.encode(), output_width=2 * size,
                                                     output_height=2 * size))).convert("RGBA")
    else:
        big = Image.open(io.BytesIO(data)).convert("RGBA")
    box = big.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox() or (0, 0, *big.size)
    art = big.crop(box)
    scale = FIT * size / max(art.size)
    art = art.resize((max(1, round(art.width * scale)), max(1, round(art.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.alpha_composite(art, ((size - art.width) // 2, (size - art.height) // 2))
    return np.asarray(canvas)


def to_tensor(rgba: np.ndarray) -> torch.Tensor:
    """(H, W, 4) uint8 -> (4, H, W) float with premultiplied colour."""
    t = torch.from_numpy(np.array(rgba, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return torch.cat([t[:3] * t[3:], t[3:]])


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def affine(images: torch.Tensor, gen: torch.Generator, size: int, scale=(0.7, 1.0), rotate: float = 20.0,
           shift: float = 0.12, flip: float = 0.0) -> torch.Tensor:
    """Random zoom, rotation (degrees), shift (fraction of the half-width) and horizontal flip; resamples to
    `size`. Outside the source is zero (transparent for premultiplied RGBA, no ink for ink maps)."""
    n = images.shape[0]
    s = _uniform(gen, n, *scale)
    a = torch.deg2rad(_uniform(gen, n, -rotate, rotate))
    f = torch.where(torch.rand(n, generator=gen) < flip, -1.0, 1.0)
    tx, ty = _uniform(gen, n, -shift, shift), _uniform(gen, n, -shift, shift)
    theta = torch.stack([torch.stack([f * a.cos() / s, -a.sin() / s, tx], 1),
                         torch.stack([f * a.sin() / s, a.cos() / s, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def backgrounds(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3, size, size) random backgrounds: gradient, noise texture, stripes, shape clutter or plain colour."""
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    c1, c2 = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
    ang = _uniform(gen, n, 0, 2 * math.pi).view(n, 1, 1, 1)
    ramp = (ang.cos() * xx + ang.sin() * yy) / 2 + 0.5
    gradient = c1 * (1 - ramp) + c2 * ramp
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=size, mode="bicubic", align_corners=False)
    fine = F.interpolate(torch.rand(n, 3, 16, 16, generator=gen), size=size, mode="bilinear", align_corners=False)
    texture = (0.6 * coarse + 0.4 * fine).clamp(0, 1)
    freq = _uniform(gen, n, 2, 8).view(n, 1, 1, 1)
    stripes = torch.sigmoid(6 * torch.sin(math.pi * freq * (ang.cos() * xx - ang.sin() * yy)))
    stripes = c1 * stripes + c2 * (1 - stripes)
    clutter = gradient.clone()
    for _ in range(6):
        cx, cy = _uniform(gen, n, -1, 1).view(n, 1, 1, 1), _uniform(gen, n, -1, 1).view(n, 1, 1, 1)
        rx, ry = _uniform(gen, n, 0.08, 0.45).view(n, 1, 1, 1), _uniform(gen, n, 0.08, 0.45).view(n, 1, 1, 1)
        disc = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        box = ((xx - cx).abs() < rx) & ((yy - cy).abs() < ry)
        shape = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, disc, box).float()
        clutter = clutter * (1 - shape) + torch.rand(n, 3, 1, 1, generator=gen) * shape
    plain = c1.expand(n, 3, size, size)
    kinds = torch.stack([gradient, texture, stripes, clutter, plain], 1)
    pick = torch.multinomial(torch.tensor([0.25, 0.25, 0.15, 0.25, 0.10]), n, replacement=True, generator=gen)
    return kinds[torch.arange(n), pick]


def color_jitter(rgb: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random brightness, contrast, saturation and a small hue rotation (YIQ), per image."""
    n = rgb.shape[0]
    view = (n, 1, 1, 1)
    rgb = rgb * _uniform(gen, n, 1 - 0.3 * strength, 1 + 0.3 * strength).view(view)
    mean = rgb.mean((1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * _uniform(gen, n, 1 - 0.3 * strength, 1 + 0.3 * strength).view(view) + mean
    gray = (0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]).expand_as(rgb)
    rgb = gray + (rgb - gray) * _uniform(gen, n, 1 - 0.4 * strength, 1 + 0.4 * strength).view(view)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    h = _uniform(gen, n, -0.35 * strength, 0.35 * strength)
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = h.cos(), -h.sin(), h.sin(), h.cos()
    mix = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("nij,njhw->nihw", mix, rgb).clamp(0, 1)


def photos(art: torch.Tensor, gen: torch.Generator, size: int, flip: float = 0.5) -> torch.Tensor:
    """(N, 3, size, size) photos of premultiplied RGBA artworks: random placement, background, colour, noise."""
    warped = affine(art, gen, size, scale=(0.55, 1.05), rotate=20.0, shift=0.2, flip=flip)
    bg = backgrounds(art.shape[0], size, gen)
    out = warped[:, :3] + bg * (1 - warped[:, 3:])
    out = color_jitter(out, gen)
    sigma = _uniform(gen, out.shape[0], 0.0, 0.03).view(-1, 1, 1, 1)
    return (out + sigma * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def line_augment(ink: torch.Tensor, gen: torch.Generator, size: int, jitter: float = 0.012,
                 erase: float = 0.5) -> torch.Tensor:
    """Ink maps (N, 1, H, W) -> (N, 1, size, size) with a smooth random warp of the strokes (amplitude `jitter`
    of the width), random placement, and, with probability `erase`, one to three erased discs."""
    n = ink.shape[0]
    lin = torch.linspace(-1, 1, ink.shape[-1])
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    identity = torch.stack([xx, yy], -1).expand(n, -1, -1, -1)
    disp = F.interpolate(torch.randn(n, 2, 5, 5, generator=gen), size=ink.shape[-1], mode="bicubic",
                         align_corners=True).permute(0, 2, 3, 1)
    ink = F.grid_sample(ink, identity + 2 * jitter * disp, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    ink = affine(ink, gen, size, scale=(0.8, 1.05), rotate=10.0, shift=0.08)
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    for k in range(3):
        on = (torch.rand(n, generator=gen) < (erase if k == 0 else erase / 2)).view(n, 1, 1, 1)
        cx, cy = _uniform(gen, n, -0.6, 0.6).view(n, 1, 1, 1), _uniform(gen, n, -0.6, 0.6).view(n, 1, 1, 1)
        r = _uniform(gen, n, 0.08, 0.2).view(n, 1, 1, 1)
        ink = ink * ~(on & ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2))
    return ink.clamp(0, 1)


def ink_of(art: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) ink of premultiplied RGBA art on a white page: 1 - luminance."""
    rgb = art[:, :3] + (1 - art[:, 3:])
    return (1 - (0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:])).clamp(0, 1)


def stroke_gaps(ink: torch.Tensor, gen: torch.Generator, max_gaps: int = 6, radius=(0.012, 0.03)) -> torch.Tensor:
    """Small breaks in the strokes, as a quick hand leaves them: up to `max_gaps` tiny discs erased at inked
    points (radius a fraction of the width)."""
    n, _, h, w = ink.shape
    lin = torch.linspace(-1, 1, w)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), lin, indexing="ij")
    out = ink.clone()
    for i in range(n):
        weights = (ink[i, 0] > 0.5).flatten().float()
        count = int(torch.randint(max_gaps + 1, (1,), generator=gen))
        if count == 0 or weights.sum() == 0:
            continue
        at = torch.multinomial(weights, count, replacement=True, generator=gen)
        for j in at.tolist():
            r = float(_uniform(gen, 1, *radius)) * 2
            out[i, 0] *= ((xx - xx.flatten()[j]) ** 2 + (yy - yy.flatten()[j]) ** 2 >= r**2).float()
    return out


def visitor_sketch(data: bytes, size: int, gen: torch.Generator, svg: bool = True, stroke=(0.2, 0.8),
                   clean: bool = False) -> Image.Image:
    """A line or outline icon drawn the way a visitor draws on the demo canvas (module docstring), as the
    demo's cropped, white-page "L" image of `size` pixels. `clean` keeps the icon as drawn (only cropped)."""
    scale = 1.0 if clean else float(_uniform(gen, 1, *stroke))
    art = to_tensor(rasterize(data, 2 * size, svg=svg, stroke_scale=scale, ink=True))[None]
    ink = ink_of(art)
    if not clean:
        if torch.rand(1, generator=gen).item() < 0.25:  # outline sets have a fixed width: thicken some
            ink = F.max_pool2d(ink, 3, 1, 1)
        ink = stroke_gaps(ink, gen)
        ink = line_augment(ink, gen, 2 * size, jitter=0.01, erase=0.1)
    return _as_drawn(Image.fromarray(((1 - ink[0, 0]).numpy() * 255).round().astype(np.uint8), "L"), size)


def _as_drawn(page: Image.Image, size: int) -> Image.Image:
    """A page of ink cropped to its strokes as the demo crops a canvas, at `size` pixels, grey."""
    from ..preprocess import crop_to_ink

    return crop_to_ink(page.convert("RGB")).resize((size, size), Image.LANCZOS).convert("L")


def edge_sketch(art: torch.Tensor, gen: torch.Generator, size: int) -> Image.Image:
    """An edge-map sketch of one premultiplied RGBA artwork, cropped to its ink like the demo, as an "L" image."""
    rgb = sketchify(art, gen, 2 * size)[0]
    return _as_drawn(Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), size)


def ink_to_rgb(ink: torch.Tensor) -> torch.Tensor:
    """Black ink on a white page, 3 channels."""
    return (1 - ink).expand(-1, 3, -1, -1)


def sketchify(art: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """(N, 3, size, size) edge-map "sketches" of premultiplied RGBA artworks (the pretraining's sketch domain).

    Edges are Sobel magnitudes of the luminance (on white) and of the alpha, thresholded at a random level; one
    in four keeps only the outline. Then random thickening and the line augmentation of the real sketches.
    """
    n = art.shape[0]
    lum = 1 - ink_of(art)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3) / 4
    ky = kx.transpose(2, 3)

    def grad(x):
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return (F.conv2d(x, kx) ** 2 + F.conv2d(x, ky) ** 2).sqrt()

    outline_only = (torch.rand(n, generator=gen) < 0.25).view(n, 1, 1, 1)
    mag = torch.maximum(grad(art[:, 3:]), grad(lum) * ~outline_only)
    thr = _uniform(gen, n, 0.1, 0.3).view(n, 1, 1, 1)
    ink = ((mag - thr) / 0.1).clamp(0, 1)
    thick = (torch.rand(n, generator=gen) < 0.2).view(n, 1, 1, 1)
    ink = torch.where(thick, F.max_pool2d(ink, 3, 1, 1), ink)
    return ink_to_rgb(line_augment(ink, gen, size))


def stroke_width(ink: torch.Tensor, gen: torch.Generator, amount: float) -> torch.Tensor:
    """Each ink map's strokes thickened or thinned by a random fraction (up to `amount`) of a 3x3 dilation or
    erosion: pens and canvases draw lines of other widths than the doodles' own."""
    w = _uniform(gen, len(ink), -amount, amount).view(-1, 1, 1, 1)
    thick, thin = F.max_pool2d(ink, 3, 1, 1), -F.max_pool2d(-ink, 3, 1, 1)
    return torch.where(w >= 0, ink + w * (thick - ink), ink - w * (thin - ink)).clamp(0, 1)
