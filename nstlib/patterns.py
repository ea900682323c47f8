"""Procedural style images: stripes, checkerboards, mosaics and painterly brush strokes.

Every generator returns an (H, W, 3) float32 NumPy array with values in [0, 1], RGB,
and is deterministic: the same arguments (and ``seed``) give the same pixels. The
module uses NumPy only, so it can be imported without TensorFlow.

Coordinates follow the image convention: ``x`` is the column (left to right) and
``y`` the row (top to bottom). Angles are in degrees and turn counter-clockwise as
the image is displayed (that is, with the row axis pointing down).

``sample_pattern(name)`` gives the fixed 512 x 512 style images bundled in ``data/``
(written by ``python data/make_samples.py``); ``SAMPLE_PATTERNS`` records their
parameters.
"""

from __future__ import annotations

import numpy as np

from nstlib._checks import check_choice

#: Parameters of the bundled style samples: name -> (generator function name, keyword
#: arguments). ``sample_pattern(name)`` calls the generator with exactly these.
SAMPLE_PATTERNS: dict[str, tuple[str, dict]] = {
    "brushstrokes": (
        "brush_strokes",
        {"size": 512, "seed": 0, "n_strokes": 2600, "stroke_length": 48.0, "width": 9.0},
    ),
    "mosaic": ("mosaic", {"size": 512, "cell_size": 32, "seed": 0, "grout": 0.08}),
    "checkerboard": ("checkerboard", {"size": 512, "period": 16}),
    "stripes": ("stripes", {"size": 512, "period": 16.0, "angle": 30.0}),
}

#: Palette of the brush-stroke style (RGB in [0, 1]): night blues, teal, ochre, yellow, cream.
BRUSH_PALETTE = np.array(
    [
        (0.07, 0.12, 0.35),
        (0.13, 0.27, 0.60),
        (0.24, 0.47, 0.78),
        (0.16, 0.52, 0.55),
        (0.55, 0.70, 0.78),
        (0.93, 0.91, 0.78),
        (0.96, 0.80, 0.25),
        (0.86, 0.55, 0.16),
        (0.62, 0.28, 0.12),
    ],
    dtype=np.float32,
)

#: Palette of the mosaic tiles (RGB in [0, 1]): terracotta, ochre, cream, teal, cobalt, sage, wine.
MOSAIC_PALETTE = np.array(
    [
        (0.72, 0.33, 0.20),
        (0.85, 0.62, 0.25),
        (0.92, 0.86, 0.72),
        (0.15, 0.50, 0.52),
        (0.16, 0.28, 0.62),
        (0.55, 0.64, 0.45),
        (0.55, 0.16, 0.18),
    ],
    dtype=np.float32,
)

_PAPER = np.array((0.94, 0.91, 0.84), dtype=np.float32)
_GROUT = np.array((0.13, 0.12, 0.11), dtype=np.float32)
_N_TRACKS = 5  # bristle tracks across a brush stroke


# ----------------------------------------------------------------------------- helpers


def _size_hw(size) -> tuple[int, int]:
    """``size`` as an int (square) or (height, width) -> (height, width), both positive."""
    if np.ndim(size) == 0:
        height = width = int(size)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


def _two_colors(colors) -> np.ndarray:
    """Two RGB colours in [0, 1] -> (2, 3) float32 array."""
    array = np.asarray(colors, dtype=np.float32)
    if array.shape != (2, 3):
        raise ValueError(f"colors must be two RGB triples, got shape {array.shape}")
    if array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("colors must lie in [0, 1]")
    return array


def _blend(colors: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mix two colours: (2, 3) colours and (H, W) weights in [0, 1] -> (H, W, 3) float32."""
    t = t[..., None].astype(np.float32)
    return np.clip(colors[0] * (1.0 - t) + colors[1] * t, 0.0, 1.0).astype(np.float32)


def _smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth, periodic Gaussian noise with zero mean and unit standard deviation.

    White noise low-pass filtered in the Fourier domain with a Gaussian whose spatial
    standard deviation is ``scale`` pixels.

    Args:
        shape: (H, W) of the field.
        scale: Correlation length in pixels (larger = smoother).
        rng: Source of randomness.

    Returns:
        (H, W) float64 field.
    """
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (np.pi * scale) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _sample_nearest(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a periodic (H, W, ...) field at float positions (nearest pixel, wrapped)."""
    rows = np.round(y).astype(np.int64) % field.shape[0]
    cols = np.round(x).astype(np.int64) % field.shape[1]
    return field[rows, cols]


# ----------------------------------------------------------------------------- stripes


def stripes(
    size=256,
    period: float = 16.0,
    angle: float = 0.0,
    colors=((0.1, 0.1, 0.4), (0.95, 0.85, 0.3)),
    softness: float = 0.25,
) -> np.ndarray:
    """Parallel stripes from a clipped sinusoid, with exact period and orientation.

    The stripe profile is ``t = 0.5 + 0.5 * clip(sin(phase) / softness, -1, 1)`` with
    ``phase = 2 * pi * (x * cos(angle) - y * sin(angle)) / period``, so the pattern
    repeats every ``period`` pixels along the direction ``angle`` and is constant
    across it.

    Args:
        size: Side of a square image, or (height, width), in pixels.
        period: Distance between successive stripes of the same colour, in pixels (> 0).
        angle: Direction along which the colour varies, in degrees counter-clockwise from
            the x axis: 0 gives vertical stripes (varying along x), 90 horizontal ones.
        colors: Two RGB colours in [0, 1]: the troughs and the crests.
        softness: In [0, 1]. 1 gives a pure sinusoid; smaller values sharpen the edges;
            0 gives a hard-edged square wave.

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    height, width = _size_hw(size)
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if not 0.0 <= softness <= 1.0:
        raise ValueError(f"softness must lie in [0, 1], got {softness}")
    theta = np.deg2rad(angle)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    wave = np.sin(2.0 * np.pi * (x * np.cos(theta) - y * np.sin(theta)) / period)
    if softness > 0:
        profile = np.clip(wave / softness, -1.0, 1.0)
    else:
        profile = np.sign(wave)
    return _blend(_two_colors(colors), 0.5 + 0.5 * profile)


# ----------------------------------------------------------------------------- checkerboard


def checkerboard(size=256, period: int = 8, colors=((0, 0, 0), (1, 1, 1))) -> np.ndarray:
    """Checkerboard of squares with side ``period / 2``; the top-left square has ``colors[0]``.

    The image equals itself shifted by ``period`` pixels along x or y, and shifted by
    ``period / 2`` it swaps the two colours.

    Args:
        size: Side of a square image, or (height, width), in pixels.
        period: Repeat length in pixels; an even integer >= 2.
        colors: Two RGB colours in [0, 1].

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    height, width = _size_hw(size)
    if int(period) != period or period < 2 or period % 2:
        raise ValueError(f"period must be an even integer >= 2, got {period}")
    half = int(period) // 2
    rows = np.arange(height)[:, None] // half
    cols = np.arange(width)[None, :] // half
    return _blend(_two_colors(colors), ((rows + cols) % 2).astype(np.float32))


# ----------------------------------------------------------------------------- mosaic


def mosaic(size=256, cell_size: float = 24, seed: int = 0, grout: float = 0.08) -> np.ndarray:
    """Coloured Voronoi tiles separated by dark grout lines.

    One tile centre is placed at random inside each ``cell_size`` square of a grid, so
    tiles are about ``cell_size`` pixels across. Tile colours come from
    ``MOSAIC_PALETTE`` with small random variations and a faint lighting gradient.

    Args:
        size: Side of a square image, or (height, width), in pixels.
        cell_size: Typical tile size in pixels (>= 4).
        seed: Random seed.
        grout: Width of the grout lines as a fraction of ``cell_size`` (>= 0).

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    height, width = _size_hw(size)
    if cell_size < 4:
        raise ValueError(f"cell_size must be at least 4 pixels, got {cell_size}")
    if grout < 0:
        raise ValueError(f"grout must be non-negative, got {grout}")
    rng = np.random.default_rng(seed)
    n_rows = int(np.ceil(height / cell_size)) + 2
    n_cols = int(np.ceil(width / cell_size)) + 2
    # Tile centres: one per grid cell (with a border of cells around the image), jittered.
    jitter = rng.uniform(0.1, 0.9, size=(n_rows, n_cols, 2))
    centres_y = (np.arange(n_rows)[:, None] - 1 + jitter[..., 0]) * cell_size
    centres_x = (np.arange(n_cols)[None, :] - 1 + jitter[..., 1]) * cell_size
    nearest, edge_distance = _voronoi(height, width, cell_size, centres_y, centres_x)
    tiles = _tile_colors(rng, n_rows * n_cols)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    # Faint light from the top-left: brighter towards that side of each tile.
    towards_light = (centres_x.ravel()[nearest] - x) + (centres_y.ravel()[nearest] - y)
    light = np.clip(1.0 + 0.15 * towards_light / cell_size, 0.85, 1.15)
    colour = tiles[nearest] * light[..., None]
    # Grout: an antialiased band of half-width grout * cell_size / 2 around tile edges.
    half_width = grout * cell_size / 2.0
    tile_weight = np.clip(edge_distance - half_width + 0.5, 0.0, 1.0)[..., None]
    image = colour * tile_weight + _GROUT * (1.0 - tile_weight)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _voronoi(height, width, cell_size, centres_y, centres_x):
    """Nearest tile centre and distance to the nearest tile edge for every pixel.

    Args:
        height, width: Image size in pixels.
        cell_size: Grid spacing of the centres.
        centres_y, centres_x: (R, C) centre coordinates; grid cell (r, c) covers rows
            [(r - 1) * cell_size, r * cell_size) and likewise for columns.

    Returns:
        (H, W) int64 flat index of the nearest centre and (H, W) float32 distance in
        pixels to the nearest Voronoi edge (the bisector with the closest other centre).
    """
    n_cols = centres_x.shape[1]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cell_r = (y // cell_size).astype(np.int64) + 1
    cell_c = (x // cell_size).astype(np.int64) + 1
    # The nearest centre of a jittered grid lies within 2 cells; check a 5 x 5 block.
    offsets = np.arange(-2, 3)
    cand_r = np.clip(cell_r[..., None, None] + offsets[:, None], 0, centres_y.shape[0] - 1)
    cand_c = np.clip(cell_c[..., None, None] + offsets[None, :], 0, n_cols - 1)
    cand = (cand_r * n_cols + cand_c).reshape(height, width, -1)
    cy = centres_y.ravel()[cand]
    cx = centres_x.ravel()[cand]
    d2 = (cy - y[..., None]) ** 2 + (cx - x[..., None]) ** 2
    best = np.argmin(d2, axis=-1)
    take = np.take_along_axis
    by = take(cy, best[..., None], -1)
    bx = take(cx, best[..., None], -1)
    d2_best = take(d2, best[..., None], -1)
    # Distance from the pixel to the bisector between the best centre and each other one.
    separation = np.sqrt((cy - by) ** 2 + (cx - bx) ** 2)
    to_bisector = (d2 - d2_best) / (2.0 * np.maximum(separation, 1e-6))
    to_bisector[separation < 1e-6] = np.inf
    nearest = take(cand, best[..., None], -1)[..., 0]
    return nearest, to_bisector.min(axis=-1).astype(np.float32)


def _tile_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32 tile colours: palette entries with random brightness and tint."""
    base = MOSAIC_PALETTE[rng.integers(0, len(MOSAIC_PALETTE), size=n)]
    brightness = rng.uniform(0.85, 1.1, size=(n, 1))
    tint = rng.normal(0.0, 0.03, size=(n, 3))
    return np.clip(base * brightness + tint, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- brush strokes


def brush_strokes(
    size=256,
    seed: int = 0,
    n_strokes: int | None = None,
    stroke_length: float = 40.0,
    width: float = 7.0,
) -> np.ndarray:
    """Swirling, colourful brush strokes on paper, following a smooth random flow field.

    A smooth random "height" field is drawn and every stroke follows its contour lines
    (the field's gradient turned by 90 degrees), which gives swirls around its peaks
    and troughs. Strokes start at random points, take unit steps along the flow, and
    are painted in order as tapered discs with bristle streaks and darker edges. A
    second smooth field picks each stroke's colour from ``BRUSH_PALETTE`` so that
    neighbouring strokes share related colours.

    Args:
        size: Side of a square image, or (height, width), in pixels.
        seed: Random seed.
        n_strokes: Number of strokes; by default enough to cover the canvas about
            4 times (``4 * H * W / (stroke_length * width)``).
        stroke_length: Length of each stroke in pixels (>= 1).
        width: Typical stroke width in pixels (>= 1); each stroke varies by +-30%.

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    height, width_px = _size_hw(size)
    if stroke_length < 1 or width < 1:
        raise ValueError("stroke_length and width must be at least 1 pixel")
    if n_strokes is None:
        n_strokes = int(np.ceil(4.0 * height * width_px / (stroke_length * width)))
    if n_strokes < 0:
        raise ValueError(f"n_strokes must be non-negative, got {n_strokes}")
    rng = np.random.default_rng(seed)
    scale = max(height, width_px) / 10.0
    flow = _contour_flow(_smooth_noise((height, width_px), scale, rng))
    colour_field = _smooth_noise((height, width_px), scale * 0.7, rng)
    path_x, path_y = _trace_strokes(flow, n_strokes, int(round(stroke_length)), rng)
    colours = _stroke_colors(colour_field, path_x[:, 0], path_y[:, 0], rng)
    canvas = _paper(height, width_px, rng)
    return _paint(canvas, path_x, path_y, colours, width, rng)


def _contour_flow(field: np.ndarray) -> np.ndarray:
    """Unit vectors along the contour lines of a periodic (H, W) field -> (H, W, 2) (dx, dy)."""
    grad_y = (np.roll(field, -1, axis=0) - np.roll(field, 1, axis=0)) / 2.0
    grad_x = (np.roll(field, -1, axis=1) - np.roll(field, 1, axis=1)) / 2.0
    norm = np.sqrt(grad_x**2 + grad_y**2) + 1e-9
    return np.stack([-grad_y / norm, grad_x / norm], axis=-1)


def _trace_strokes(flow: np.ndarray, n_strokes: int, n_steps: int, rng: np.random.Generator):
    """Advect random start points along ``flow`` with unit steps (midpoint rule).

    Returns:
        (N, n_steps) float64 x and y coordinates of every stroke's centre line.
    """
    height, width = flow.shape[:2]
    x = np.empty((n_strokes, n_steps))
    y = np.empty((n_strokes, n_steps))
    x[:, 0] = rng.uniform(-4, width + 4, n_strokes)
    y[:, 0] = rng.uniform(-4, height + 4, n_strokes)
    for step in range(1, n_steps):
        start = _sample_nearest(flow, x[:, step - 1], y[:, step - 1])
        mid = _sample_nearest(
            flow, x[:, step - 1] + 0.5 * start[:, 0], y[:, step - 1] + 0.5 * start[:, 1]
        )
        x[:, step] = x[:, step - 1] + mid[:, 0]
        y[:, step] = y[:, step - 1] + mid[:, 1]
    return x, y


def _stroke_colors(field, x0, y0, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float32 colours: palette position from the colour field plus jitter."""
    position = 0.5 + 0.22 * _sample_nearest(field, x0, y0) + rng.normal(0, 0.07, x0.shape)
    position = np.clip(position, 0.0, 1.0) * (len(BRUSH_PALETTE) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(BRUSH_PALETTE) - 1)
    frac = (position - low)[:, None]
    colour = BRUSH_PALETTE[low] * (1 - frac) + BRUSH_PALETTE[high] * frac
    colour = colour * rng.uniform(0.85, 1.1, (len(x0), 1)) + rng.normal(0, 0.025, colour.shape)
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


def _paper(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 paper background: warm off-white with faint smooth mottling."""
    mottle = _smooth_noise((height, width), 6.0, rng)[..., None]
    return np.clip(_PAPER * (1.0 + 0.015 * mottle), 0.0, 1.0).astype(np.float32)


def _paint(canvas, path_x, path_y, colours, width, rng: np.random.Generator) -> np.ndarray:
    """Paint strokes in order (later strokes on top) onto an (H, W, 3) canvas.

    Each centre-line point stamps a disc whose radius tapers towards the stroke's ends.
    For every pixel the topmost stamp is found with one ``np.maximum.at`` over a packed
    (stroke, point) key, then shaded by its distance across the stroke.

    Args:
        canvas: (H, W, 3) float32 background in [0, 1].
        path_x, path_y: (N, n_steps) centre lines of the strokes, in pixels.
        colours: (N, 3) float32 stroke colours in [0, 1].
        width: Typical stroke width in pixels.
        rng: Source of randomness (stroke widths and bristle streaks).

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    height, width_px = canvas.shape[:2]
    n_strokes, n_steps = path_x.shape
    if n_strokes == 0:
        return canvas
    radius = 0.5 * width * rng.uniform(0.7, 1.3, n_strokes)
    r_max = int(np.ceil(radius.max()))
    oy, ox = np.mgrid[-r_max : r_max + 1, -r_max : r_max + 1]
    disc = ox**2 + oy**2 <= (r_max + 0.5) ** 2
    ox, oy = ox[disc], oy[disc]  # (K,) pixel offsets that a stamp may cover
    t = np.linspace(0.0, 1.0, n_steps)
    taper = 0.45 + 0.55 * np.sin(np.pi * np.clip(t * 1.1, 0.0, 1.0)) ** 0.5  # (n_steps,)
    point_radius = radius[:, None] * taper[None, :]  # (N, n_steps)

    base_x, base_y = np.round(path_x), np.round(path_y)
    shift_x = (base_x - path_x).astype(np.float32)[..., None]  # (N, n_steps, 1)
    shift_y = (base_y - path_y).astype(np.float32)[..., None]
    dist2 = (shift_x + ox.astype(np.float32)) ** 2 + (shift_y + oy.astype(np.float32)) ** 2
    inside = dist2 <= (point_radius**2).astype(np.float32)[..., None]  # (N, n_steps, K)
    stroke, step, offset = np.nonzero(inside)
    px = base_x.astype(np.int64)[stroke, step] + ox[offset]
    py = base_y.astype(np.int64)[stroke, step] + oy[offset]
    on_canvas = (px >= 0) & (px < width_px) & (py >= 0) & (py < height)
    # Later strokes (and later points of a stroke) have larger keys and end on top.
    key = (stroke * n_steps + step)[on_canvas]
    top = np.full(height * width_px, -1, dtype=np.int64)
    np.maximum.at(top, py[on_canvas] * width_px + px[on_canvas], key)

    painted = np.nonzero(top >= 0)[0]
    step = top[painted] % n_steps
    stroke = top[painted] // n_steps
    # Signed distance across the stroke, relative to its local direction, in [-1, 1].
    nxt = np.minimum(step + 1, n_steps - 1)
    prv = np.maximum(step - 1, 0)
    dx = path_x[stroke, nxt] - path_x[stroke, prv]
    dy = path_y[stroke, nxt] - path_y[stroke, prv]
    norm = np.sqrt(dx**2 + dy**2) + 1e-9
    rows, cols = painted // width_px, painted % width_px
    across = ((cols - path_x[stroke, step]) * -dy + (rows - path_y[stroke, step]) * dx) / norm
    across = across / np.maximum(point_radius[stroke, step], 1e-6)
    shade = _bristle_tracks(across, stroke, n_strokes, rng)
    flat = canvas.reshape(-1, 3).copy()
    flat[painted] = colours[stroke] * shade[:, None].astype(np.float32)
    return np.clip(flat.reshape(canvas.shape), 0.0, 1.0).astype(np.float32)


def _bristle_tracks(across: np.ndarray, stroke: np.ndarray, n_strokes: int, rng) -> np.ndarray:
    """Brightness of each painted pixel from the bristle track it lies in.

    A stroke is split across its width into ``_N_TRACKS`` parallel tracks; each track of
    each stroke gets its own random brightness, and the outer tracks are darker, so the
    stroke shows streaks along its length and a rounded body. The shading is piecewise
    constant, which keeps the bundled PNG small.

    Args:
        across: (P,) signed distance across the stroke, in units of its radius ([-1, 1]).
        stroke: (P,) index of the stroke that painted each pixel.
        n_strokes: Number of strokes.
        rng: Source of randomness.

    Returns:
        (P,) float32 brightness factors, about 0.8 to 1.1.
    """
    track = np.clip(((across + 1.0) * 0.5 * _N_TRACKS).astype(np.int64), 0, _N_TRACKS - 1)
    centre = (np.arange(_N_TRACKS) + 0.5) / _N_TRACKS * 2.0 - 1.0
    body = 1.0 - 0.16 * centre**2  # (_N_TRACKS,) darker towards the edges
    streaks = rng.uniform(0.93, 1.07, (n_strokes, _N_TRACKS))
    return (body[track] * streaks[stroke, track]).astype(np.float32)


# ----------------------------------------------------------------------------- samples


def sample_pattern(name: str) -> np.ndarray:
    """The 512 x 512 style image bundled as ``data/<name>.png``.

    Parameters are listed in ``SAMPLE_PATTERNS``: brush strokes (seed 0, 2600 strokes
    of length 48 px and width 9 px), mosaic (32 px tiles, seed 0, grout 0.08),
    checkerboard (period 16 px, black and white) and stripes (period 16 px, 30 degrees,
    default colours and softness).

    Args:
        name: One of "brushstrokes", "mosaic", "checkerboard", "stripes".

    Returns:
        (512, 512, 3) float32 in [0, 1].

    Raises:
        ValueError: unknown name.
    """
    check_choice(name, SAMPLE_PATTERNS, "pattern", unknown=True)
    function, kwargs = SAMPLE_PATTERNS[name]
    generators = {
        "brush_strokes": brush_strokes,
        "mosaic": mosaic,
        "checkerboard": checkerboard,
        "stripes": stripes,
    }
    return generators[function](**kwargs)
