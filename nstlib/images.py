"""Images in and out: loading any Pillow format, resizing, atomic saving, VGG pre-processing.

Every image inside nstlib is a float32 tensor of shape (1, H, W, 3) with values in [0, 1],
RGB. Conversions to and from that form happen here and only here.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from nstlib import config
from nstlib._checks import check_choice
from nstlib._io import atomic_open
from nstlib.sizes import fitted_hw

#: Largest image (width x height) that ``load_image`` accepts by default: 64 megapixels.
MAX_PIXELS = 64_000_000

#: ImageNet channel means in BGR order, on the 0-255 scale (the "caffe" preprocessing
#: the Keras VGG19 weights were trained with).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)

#: Content photographs copied from scikit-image's bundled data (see data/README.md).
CONTENT_SAMPLES = ("astronaut", "chelsea", "coffee")
#: Procedurally generated style images (nstlib.patterns, written by data/make_samples.py).
STYLE_SAMPLES = ("brushstrokes", "mosaic", "checkerboard", "stripes")


class ImageError(ValueError):
    """An image could not be read, is too large, or would overwrite an input."""


# ----------------------------------------------------------------------------- loading


def load_image(source, max_size: int | None = None, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Load an image as a (1, H, W, 3) float32 RGB tensor in [0, 1].

    Args:
        source: A file path (any format Pillow reads), the name of a bundled sample
            (see ``sample_names()``), a ``PIL.Image``, or an array/tensor of shape
            (H, W), (H, W, 1|3|4) or (1, H, W, 3). Integer arrays are scaled by their
            dtype's maximum; float arrays must already lie in [0, 1].
        max_size: If given, the longer side is reduced to at most this many pixels
            (aspect ratio kept, antialiased Lanczos filtering). Smaller images are kept.
        max_pixels: Refuse images with more than this many pixels (checked from the
            header before decoding).

    Returns:
        (1, H, W, 3) float32 tensor in [0, 1].

    Raises:
        ImageError: missing, unreadable, corrupt or oversized input.
    """
    if isinstance(source, str | os.PathLike):
        array = _read_file(Path(source), max_pixels)
    elif isinstance(source, Image.Image):
        array = _pil_to_array(ImageOps.exif_transpose(source))
    else:
        array = _array_to_rgb(np.asarray(source))
    image = tf.convert_to_tensor(array[None], dtype=tf.float32)
    if max_size is not None:
        image = resize_max_side(image, max_size, upscale=False)
    return image


def load_mask(source, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Load a mask: white (1) where something applies, black (0) where not, grey between.

    Args:
        source: Anything ``load_image`` reads: an image file (grey or colour; the mean of
            R, G, B is used, transparency counts as white), a ``PIL.Image``, or an array of
            shape (H, W) or (H, W, 1|3|4) (bool, integer or float in [0, 1]).
        max_pixels: As in ``load_image``.

    Returns:
        (1, H, W, 1) float32 in [0, 1].

    Raises:
        ImageError: missing, unreadable, corrupt or oversized input.
    """
    return tf.reduce_mean(load_image(source, max_pixels=max_pixels), axis=-1, keepdims=True)


def _read_file(path: Path, max_pixels: int) -> np.ndarray:
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except PermissionError:  # a folder on the way cannot be searched
        raise ImageError(f"permission denied: {path}") from None
    if not exists:
        if str(path) in sample_names():
            return _read_sample(str(path), max_pixels)
        raise ImageError(f"image not found: {path}")
    if is_dir:
        raise ImageError(f"expected an image file, got a directory: {path}")
    try:
        with _own_pixel_limit(), Image.open(path) as pil:
            width, height = pil.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large: {path} is {width}x{height} "
                    f"({width * height:,} pixels; the limit is {max_pixels:,})"
                )
            array = _read_png_16_bit_rgb(pil, path)
            if array is None:
                pil.load()
                array = _pil_to_array(ImageOps.exif_transpose(pil))
            return array
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"permission denied: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"image too large: {path} ({err})") from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image Pillow can read: {path}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image: {path} ({err})") from None


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _own_pixel_limit():
    """Let ``max_pixels`` be the only size limit while an image is opened and decoded.

    Pillow refuses images above its own ``Image.MAX_IMAGE_PIXELS`` (about 89 M pixels,
    warning; 179 M, error) whatever the caller allows. ``_read_file`` checks the same
    header size against ``max_pixels`` itself, so Pillow's check is switched off for the
    call (under a lock: it is a module global) and restored afterwards. Any other
    DecompressionBombWarning is still an error.
    """
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_png_16_bit_rgb(pil: Image.Image, path: Path) -> np.ndarray | None:
    """A 16-bit RGB or RGBA PNG at full precision as (H, W, 3) float32, else None.

    Pillow has no 48/64-bit mode: it decodes such a PNG to 8 bits per channel, keeping
    each big-endian sample's high byte (raw mode "RGB;16B"). Decoding the same data again
    with the little-endian unpacker ("RGB;16L") keeps the low byte instead; the two give
    the 16-bit values, v = 256·high + low, scaled by 1/65535.
    """
    if pil.format != "PNG" or len(pil.tile) != 1:
        return None
    tile = pil.tile[0]
    rawmode = tile[3] if isinstance(tile[3], str) else tile[3][0]
    if rawmode not in ("RGB;16B", "RGBA;16B"):
        return None
    low_rawmode = rawmode.replace(";16B", ";16L")
    args = low_rawmode if isinstance(tile[3], str) else (low_rawmode, *tile[3][1:])
    with Image.open(path) as low:
        low.tile = [tile._replace(args=args) if hasattr(tile, "_replace")
                    else (*tile[:3], args)]
        low.load()
        low_bytes = np.asarray(ImageOps.exif_transpose(low), dtype=np.uint16)
    pil.load()
    high_bytes = np.asarray(ImageOps.exif_transpose(pil), dtype=np.uint16)
    values = (high_bytes * 256 + low_bytes).astype(np.float32) / np.float32(65535.0)
    return values if values.shape[-1] == 3 else _composite_on_white(values)


def _pil_to_array(pil: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) float32 in [0, 1]."""
    mode = pil.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        # 16-bit (or 32-bit integer) grey: keep the full precision.
        grey = np.asarray(pil, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        grey = np.clip(grey / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        grey = np.clip(np.asarray(pil, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode == "P" and "transparency" in pil.info
    )
    if has_alpha:
        return _composite_on_white(np.asarray(pil.convert("RGBA"), dtype=np.float32) / 255.0)
    return np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) in [0, 1] -> (H, W, 3): alpha-blend over a white background."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    return (rgb * alpha + (1.0 - alpha)).astype(np.float32)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Array of shape (H, W), (H, W, 1|3|4) or (1, H, W, 3) -> (H, W, 3) float32 in [0, 1]."""
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ImageError(f"expected a single image, got a batch of shape {array.shape}")
        array = array[0]
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif array.dtype == bool:
        array = array.astype(np.float32)
    else:
        array = array.astype(np.float32)
        if array.size and (np.nanmin(array) < -1e-6 or np.nanmax(array) > 1 + 1e-6):
            raise ImageError(
                f"float images must lie in [0, 1], got values in "
                f"[{np.nanmin(array):.3g}, {np.nanmax(array):.3g}]"
            )
    if not np.isfinite(array).all():
        raise ImageError("image contains NaN or infinite values")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageError(f"cannot interpret an array of shape {array.shape} as an image")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = _composite_on_white(array)
    return np.clip(array, 0.0, 1.0)


def as_hwc(image, name: str = "image") -> np.ndarray:
    """One image as a float64 (H, W, C) NumPy array, values untouched (for numeric code).

    Args:
        image: (H, W), (H, W, C) or (1, H, W, C) array-like or tensor.
        name: What the argument is called, for the error message.

    Returns:
        (H, W, C) float64; (H, W) gains a channel axis of 1.

    Raises:
        ValueError: a batch of more than one image, or any other shape.
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected a single {name}, got a batch of shape {array.shape}")
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W), (H, W, C) or (1, H, W, C), "
                         f"got {array.shape}")
    return array


# ----------------------------------------------------------------------------- resizing


def resize_max_side(image: tf.Tensor, size: int, upscale: bool = True) -> tf.Tensor:
    """Resize so that the longer side is ``size`` pixels, keeping the aspect ratio.

    Args:
        image: (B, H, W, 3) float32 in [0, 1].
        size: Target length of the longer side, in pixels (positive).
        upscale: If False, images already within ``size`` are returned unchanged.

    Returns:
        (B, H', W', 3) float32 in [0, 1] with max(H', W') == size (or unchanged).
    """
    if int(size) <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    height, width = int(image.shape[1]), int(image.shape[2])
    longer = max(height, width)
    if longer == size or (longer < size and not upscale):
        return image
    return resize(image, fitted_hw((height, width), size))


def resize(image: tf.Tensor, size_hw: tuple[int, int]) -> tf.Tensor:
    """Antialiased resize to an exact (height, width).

    Downscaling uses area averaging (no aliasing of fine patterns); upscaling uses
    Lanczos-3. Both are clipped back to [0, 1] (Lanczos overshoots at edges).

    Args:
        image: (B, H, W, 3) float32.
        size_hw: Target (height, width).

    Returns:
        (B, height, width, 3) float32 in [0, 1].
    """
    height, width = int(image.shape[1]), int(image.shape[2])
    shrinking = size_hw[0] <= height and size_hw[1] <= width
    method = "area" if shrinking else "lanczos3"
    out = tf.image.resize(image, size_hw, method=method, antialias=True)
    return tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 1.0)


def at_size(image: tf.Tensor, size_hw) -> tf.Tensor:
    """``image`` resized to exactly ``size_hw`` (a size from a run's plan), or ``image``
    itself when it already has that size (no resampling, so no round-off).

    Args:
        image: (B, H, W, 3) float32.
        size_hw: Target (height, width).

    Returns:
        (B, height, width, 3) float32.
    """
    if (int(image.shape[1]), int(image.shape[2])) == tuple(size_hw):
        return image
    return resize(image, tuple(size_hw))


# ----------------------------------------------------------------------------- saving


def to_uint8(image) -> np.ndarray:
    """(1, H, W, 3) or (H, W, 3) float in [0, 1] -> (H, W, 3) uint8 (rounded)."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 4:
        array = array[0]
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(image, path, inputs: Iterable = ()) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename).

    Args:
        image: (1, H, W, 3) or (H, W, 3) float in [0, 1].
        path: Destination; the suffix picks the format (.png, .jpg/.jpeg, .webp, .tif).
        inputs: Paths of the run's input images; writing over any of them is refused.

    Returns:
        The destination path.

    Raises:
        ImageError: unknown suffix, or the destination is one of ``inputs``.
    """
    path = Path(path)
    data = encode_image(image, path)
    check_not_an_input(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return path


def encode_image(image, path) -> bytes:
    """The bytes ``save_image`` writes for ``image`` at ``path`` (format from the suffix).

    Args:
        image: (1, H, W, 3) or (H, W, 3) float in [0, 1].
        path: Destination; only its suffix is used (.png, .jpg/.jpeg, .webp, .tif).

    Raises:
        ImageError: unknown suffix.
    """
    path = Path(path)
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
               ".tiff": "TIFF"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image suffix {path.suffix!r} for {path}; use .png or .jpg")
    options = {"quality": 95} if fmt in {"JPEG", "WEBP"} else {}
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def check_not_an_input(path, inputs: Iterable) -> None:
    """Refuse a destination that is one of ``inputs`` (also through a link or hard link).

    Args:
        path: Where something is about to be written.
        inputs: Input image paths, sample names (their files in ``data/`` are protected)
            or in-memory images (ignored).

    Raises:
        ImageError: ``path`` is the same file as an input.
    """
    path = Path(path)
    for source in inputs:
        if not isinstance(source, str | os.PathLike):
            continue
        file = input_path(source)
        if _same_file(path, file):
            where = "" if str(file) == str(source) else f" ({file})"
            also = "" if str(path) in (str(source), str(file)) else f": {path} is that file"
            raise ImageError(f"refusing to overwrite the input image {source}{where}{also}")


def input_path(source: str | os.PathLike) -> Path:
    """The file an input names: the path as typed, else the bundled sample of that name."""
    path = Path(source)
    try:
        if path.exists():
            return path
    except OSError:  # e.g. permission denied: it is a path, not a sample name
        return path
    return sample_path(str(source)) if str(source) in sample_names() else path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


# ----------------------------------------------------------------------------- VGG


def vgg_preprocess(image: tf.Tensor) -> tf.Tensor:
    """[0, 1] RGB -> the 0-255, BGR, mean-subtracted input the VGG19 weights expect.

    Args:
        image: (B, H, W, 3) float32 RGB in [0, 1].

    Returns:
        (B, H, W, 3) float32 BGR, roughly in [-124, 152].
    """
    bgr = tf.reverse(image, axis=[-1]) * 255.0
    return bgr - tf.constant(VGG_MEAN_BGR, dtype=image.dtype)


def vgg_deprocess(x: tf.Tensor) -> tf.Tensor:
    """Inverse of ``vgg_preprocess``: (B, H, W, 3) BGR 0-255 -> RGB in [0, 1] (clipped)."""
    rgb = tf.reverse(x + tf.constant(VGG_MEAN_BGR, dtype=x.dtype), axis=[-1]) / 255.0
    return tf.clip_by_value(rgb, 0.0, 1.0)


# ----------------------------------------------------------------------------- samples


def sample_names() -> tuple[str, ...]:
    """Names of the bundled sample images (content photographs, then generated styles)."""
    return CONTENT_SAMPLES + STYLE_SAMPLES


def sample_path(name: str) -> Path:
    """Path of a bundled sample in ``data/`` (the file may be absent in a bare install)."""
    check_choice(name, sample_names(), "sample", error=ImageError, unknown=True)
    suffix = ".jpg" if name in CONTENT_SAMPLES else ".png"
    return config.DATA_DIR / f"{name}{suffix}"


def load_sample(name: str, max_size: int | None = None) -> tf.Tensor:
    """Load a bundled sample by name, regenerating it if ``data/`` is not available.

    Args:
        name: One of ``sample_names()``.
        max_size: Optional bound on the longer side, as in ``load_image``.

    Returns:
        (1, H, W, 3) float32 in [0, 1].
    """
    return load_image(_read_sample(name, MAX_PIXELS), max_size=max_size)


def _read_sample(name: str, max_pixels: int) -> np.ndarray:
    """A sample as (H, W, 3) float32: from data/ when present, else regenerated."""
    path = sample_path(name)
    if path.exists():
        return _read_file(path, max_pixels)
    return _array_to_rgb(np.asarray(make_sample(name)))


def make_sample(name: str) -> np.ndarray:
    """Produce a sample from its source: scikit-image's data or ``nstlib.patterns``.

    Returns:
        (H, W, 3) uint8 (photographs) or float32 in [0, 1] (patterns).
    """
    if name in CONTENT_SAMPLES:
        import skimage.data

        return getattr(skimage.data, name)()
    from nstlib import patterns

    return patterns.sample_pattern(name)
