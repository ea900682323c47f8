"""Image sizes, computed in one place: "longer side -> (height, width)", pyramid levels and
the style image's side.

TensorFlow-free, so the command line can check sizes from image headers before TensorFlow
loads. ``images.resize_max_side`` resizes to exactly ``fitted_hw``; the run's plan, the
memory model, the mask check and the ablation worker all ask this module rather than
rounding on their own.
"""

from __future__ import annotations


def fitted_hw(hw, longer_side: int) -> tuple[int, int]:
    """(height, width) of an image of size ``hw`` scaled so its longer side is ``longer_side``.

    Args:
        hw: (height, width) in pixels, positive.
        longer_side: The longer side after scaling, in pixels (positive).

    Returns:
        (height', width'), each rounded to the nearest pixel and at least 1, keeping the
        aspect ratio; ``hw`` itself when its longer side already is ``longer_side``.
    """
    height, width = int(hw[0]), int(hw[1])
    if max(height, width) == int(longer_side):
        return height, width
    scale = int(longer_side) / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def pyramid_hws(hw, levels: int) -> list[tuple[int, int]]:
    """(height, width) of each Gaussian-pyramid level, finest first (each side halved,
    rounding up, as ``pyramids.gaussian_pyramid`` does)."""
    out = [(int(hw[0]), int(hw[1]))]
    for _ in range(int(levels) - 1):
        h, w = out[-1]
        out.append(((h + 1) // 2, (w + 1) // 2))
    return out


def style_side(result_side: int, style_size: int | None = None,
               style_scale: float | None = None) -> int | None:
    """The style image's longer side: ``style_size`` if set, else ``style_scale`` times the
    result's longer side (rounded, at least 1), else None (the style follows the result)."""
    if style_size is not None:
        return int(style_size)
    if style_scale is not None:
        return max(1, round(float(style_scale) * int(result_side)))
    return None


def stage_side(side_at_top: int, stage_size: int, top_size: int) -> int:
    """A side that is ``side_at_top`` at the finest scale, at a coarser stage of
    ``stage_size`` (e.g. the style image's side at each coarse-to-fine scale)."""
    return max(1, round(int(side_at_top) * int(stage_size) / int(top_size)))
