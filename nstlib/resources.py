"""How much memory and time a run needs, predicted before it starts (no TensorFlow).

A ``stylize`` step keeps, for the gradient, the activation of every VGG19 layer up to the
deepest one the loss uses, and holds gradient buffers of the same sizes on the way back;
the losses keep float32 working copies of their own layers' features; the optimizer keeps
per-pixel state (Adam: two moments; SciPy's L-BFGS-B: m correction pairs and about twenty
more image-sized vectors, all float64). So the peak resident memory of a step is modelled as

    peak = base + k_net · A_net + k_loss · A_loss + optimizer state + input images

with ``A_net`` = Σ h_l·w_l·c_l · (2 bytes in bfloat16, 4 in float32) over every layer
(convolutions and pools) up to the deepest loss layer, summed over the Gaussian-pyramid
levels the style loss sees, and ``A_loss`` = Σ h_l·w_l·c_l · 4 bytes over the loss layers.
``base`` (Python, TensorFlow, the weights, traced graphs), ``k_net`` and ``k_loss`` are
fitted by least squares (relative residuals) to measured peaks
(``benchmarks/memory.py --calibrate``, stored in
``benchmarks/results/memory_calibration.json``); the optimizer and input terms are counted,
not fitted. Computing the style targets is one forward pass over each style image,
``base + k_style · A_net(style)``; the peak is the larger of the two. With ``scales`` the
largest scale counts.

Seconds per step are the convolution and Gram FLOPs of one forward + input-gradient pass
divided by the rate a step reached on the calibration machine: an estimate that holds
for that machine (``CALIBRATION_MACHINE``) and is scaled by the core count elsewhere.

The model describes a CPU run (resident memory). On a GPU the activations live in the
GPU's memory, which this module does not check.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from nstlib.optimizer_specs import optimizer_spec
from nstlib.settings import StylizeConfig, recipe_for
from nstlib.sizes import fitted_hw, pyramid_hws
from nstlib.vgg_layers import DEFAULT_NETWORK, deepest_layer, layer_channels, layers_up_to

GIB = 2**30

# ----------------------------------------------------------------------------- the fit
# Fitted to benchmarks/results/memory_calibration.json (benchmarks/memory.py --fit);
# tests/test_resources.py checks that these are that file's fit.

#: TensorFlow, Keras, Python and the weights: resident before any image is processed.
BASE_BYTES = 1_003_501_058
#: Resident bytes per byte of network activations in an optimisation step (forward
#: activations kept for the gradient, gradient buffers, transients).
K_NET = 1.7459
#: Resident bytes per byte of float32 loss-layer features (the losses' working copies).
K_LOSS = 1.8078
#: Resident bytes per byte of network activations while the style targets are computed.
K_STYLE = 1.0796
#: Effective FLOP rate of a whole step on the calibration machine, per precision (GFLOP/s):
#: conv + Gram FLOPs / (process CPU seconds of a step / cores), median over 512-2048 px.
STEP_GFLOPS = {"float32": 306.6, "bfloat16": 534.2}
#: The machine the constants were measured on.
CALIBRATION_MACHINE = "AMD EPYC (Zen 5), 2 cores, AVX-512 incl. AVX512-BF16, no AMX"
CALIBRATION_CORES = 2

#: float32 copies of the image every Keras step holds (variable, gradient, clipped copy,
#: the image before the update).
IMAGE_COPIES = 4
#: Correction pairs L-BFGS keeps (SciPy's ``maxcor``, used by ``optimize.minimize``).
LBFGS_MEMORY = 10
#: float64 image-sized vectors a SciPy L-BFGS-B run with bounds adds besides the 2·m
#: correction pairs (measured: 39 in all with SciPy 1.17.1 and m = 10, ``scipy_lbfgs`` in
#: the calibration file): the rest of its workspace, x, the gradient, ScalarFunction's
#: copies, and the bounds, which SciPy expands to n (lower, upper) pairs and then arrays.
LBFGS_SCIPY_EXTRA_VECTORS = 19
#: float64-sized vectors ``optimize.minimize`` adds: x0, the cached x and gradient, and
#: the float32 image and gradient handed to and from TensorFlow (two halves).
LBFGS_OWN_VECTORS = 4
#: Bytes per input-image pixel kept while a run lasts: the loaded float32 RGB image.
INPUT_BYTES_PER_PIXEL = 12


class InsufficientMemoryError(ValueError):
    """A run needs more memory than is available (one-line message, see ``check_fits``)."""


# ----------------------------------------------------------------------------- geometry


def layer_shapes(height: int, width: int, last_layer: str,
                 network: str = DEFAULT_NETWORK) -> list[tuple[str, int, int, int]]:
    """(name, h, w, channels) of every layer of ``network`` up to and including ``last_layer``.

    Pools are 2x2 with stride 2 and "valid" padding, so an odd side h becomes floor(h/2),
    as in Keras.
    """
    h, w, rows = int(height), int(width), []
    for name in layers_up_to(last_layer, network):
        if "_pool" in name:
            h, w = h // 2, w // 2
        rows.append((name, h, w, layer_channels(name, network)))
    return rows


def conv_flops(height: int, width: int, c_in: int, c_out: int, kernel: int = 3) -> int:
    """FLOPs of one stride-1 "same" convolution forward: 2·H·W·k²·C_in·C_out."""
    return 2 * int(height) * int(width) * kernel * kernel * int(c_in) * int(c_out)


def step_flops(height: int, width: int, content_layers, style_layers,
               network: str = DEFAULT_NETWORK) -> dict:
    """Convolution and Gram FLOPs of one optimisation step (forward + input gradient).

    Each 3x3 convolution up to the deepest loss layer counts 2·H·W·9·C_in·C_out forward
    and the same again for its input gradient (block1_conv1 included: the image is the
    variable). Weight gradients are never computed (the weights are constants); bias,
    ReLU, pooling and the losses are not counted. Each style layer's Gram counts
    4·h·w·C² (forward FᵀF and its backward product).

    Returns:
        {"deepest_layer", "conv_layers", "forward", "input_gradient", "conv_total",
        "gram", "per_layer"} (FLOPs as integers; "per_layer" lists {"layer", "height",
        "width", "c_in", "c_out", "forward"} per convolution in network order).
    """
    last = deepest_layer(tuple(content_layers) + tuple(style_layers), network)
    shapes, rows, c_in = layer_shapes(height, width, last, network), [], 3
    for name, h, w, c in shapes:
        if "_conv" in name:
            rows.append({"layer": name, "height": h, "width": w, "c_in": c_in, "c_out": c,
                         "forward": conv_flops(h, w, c_in, c)})
        c_in = c
    forward = sum(row["forward"] for row in rows)
    by_name = {name: h * w * c * c for name, h, w, c in shapes}
    gram = sum(4 * by_name[name] for name in style_layers)
    return {"deepest_layer": last, "conv_layers": len(rows), "forward": forward,
            "input_gradient": forward, "conv_total": 2 * forward, "gram": gram,
            "per_layer": rows}


# ----------------------------------------------------------------------------- memory
#
# Each prediction is computed for a config whose recipe is applied (``plan.RunPlan.config``)
# and for exact image sizes: ``plan.make_plan`` calls ``peak_bytes_of`` and
# ``step_seconds_at`` once per run. The ``predict_*`` functions, ``check_fits`` and
# ``describe`` take that plan, or (for notebooks, benchmarks and tests) a ``StylizeConfig``
# and the input sizes, which they plan once with ``plan.make_plan``.


def _resolved(config) -> StylizeConfig:
    """The recipe-applied config of a ``RunPlan``, or of a ``StylizeConfig`` as planned
    before its weights are found (``plan.resolve_config``)."""
    from nstlib.plan import RunPlan, resolve_config

    return config.config if isinstance(config, RunPlan) else resolve_config(config)[0]


def _plan(config, content_hw, style_hw):
    """``config`` if it is a ``RunPlan``, else its plan for these input sizes."""
    from nstlib.plan import as_plan

    return as_plan(config, content_hw, style_hw)


def activation_bytes(config, hw) -> tuple[int, int]:
    """(A_net, A_loss) in bytes of one forward pass over an image of size ``hw``.

    A_net: every layer up to the deepest loss layer, in the compute precision, summed
    over the pyramid levels the style loss sees. A_loss: the loss layers at float32.

    Args:
        config: A ``plan.RunPlan`` or a ``StylizeConfig`` (planned with the weights
            ``weight_sources.likely_source`` expects).
        hw: (height, width) the network sees.
    """
    return _activation_bytes(_resolved(config), hw)


def _activation_bytes(resolved: StylizeConfig, hw) -> tuple[int, int]:
    loss, network = resolved.loss, resolved.network.architecture
    layers = tuple(loss.content_layers) + tuple(loss.style_layers)
    if not layers:
        raise ValueError("at least one content or style layer is needed")
    last, wanted = deepest_layer(layers, network), set(layers)
    dtype_bytes = 2 if resolved.network.compute_dtype == "bfloat16" else 4
    net = loss_bytes = 0
    for level, (h, w) in enumerate(pyramid_hws(hw, loss.pyramid_levels)):
        for name, lh, lw, c in layer_shapes(h, w, last, network):
            net += lh * lw * c * dtype_bytes
            if level == 0 and name in wanted:
                loss_bytes += lh * lw * c * 4
    return net, loss_bytes


def optimizer_bytes(config, hw) -> int:
    """Per-pixel optimizer state of an image of size ``hw`` (counted, not fitted): the
    optimizer's ``state_slots`` plus the loop's ``IMAGE_COPIES`` in float32 for a Keras
    optimizer, SciPy's float64 vectors for L-BFGS (the one that is not).

    ``config``: a ``StylizeConfig`` or a ``plan.RunPlan``."""
    elements = 3 * int(hw[0]) * int(hw[1])
    spec = optimizer_spec(getattr(config, "config", config).optim.optimizer)
    if spec.keras is None:  # L-BFGS through SciPy
        vectors = 2 * LBFGS_MEMORY + LBFGS_SCIPY_EXTRA_VECTORS + LBFGS_OWN_VECTORS
        return vectors * elements * 8
    return (spec.state_slots + IMAGE_COPIES) * elements * 4


def peak_bytes_of(resolved: StylizeConfig, stage_hws, input_hws) -> int:
    """The peak of ``predict_peak_bytes`` from exact sizes (``plan.make_plan`` calls it).

    Args:
        resolved: A config with its recipe applied (``plan.RunPlan.config``).
        stage_hws: Per scale, (the content's (h, w), the style images' (h, w)s).
        input_hws: (h, w) of every input image as loaded.
    """
    worst = 0.0
    for content_hw, style_hws in stage_hws:
        net, loss_bytes = _activation_bytes(resolved, content_hw)
        step = K_NET * net + K_LOSS * loss_bytes + optimizer_bytes(resolved, content_hw)
        style = max((K_STYLE * _activation_bytes(resolved, hw)[0] for hw in style_hws),
                    default=0.0)  # one style image's targets at a time
        worst = max(worst, step, style)
    inputs = INPUT_BYTES_PER_PIXEL * sum(int(h) * int(w) for h, w in input_hws)
    return int(BASE_BYTES + worst + inputs)


def predict_peak_bytes(config, content_hw=None, style_hw=None) -> int:
    """Predicted peak resident memory of ``stylize`` on a CPU, in bytes.

    Args:
        config: The run's ``plan.RunPlan`` (then nothing else), or its ``StylizeConfig``
            (size, scales, style size, layers, precision, optimizer) with:
        content_hw: (height, width) of the content image as loaded (any size: it is
            resized to each scale as ``stylize`` does).
        style_hw: (height, width) of the style image as loaded, or a list of them (one
            per style image).

    Returns:
        ``BASE_BYTES`` plus the largest of the step and style-target terms over the scales
        (see the module docstring), plus the loaded input images.
    """
    return _plan(config, content_hw, style_hw).peak_bytes


def as_hws(style_hw) -> list[tuple[int, int]]:
    """One (height, width) or a sequence of them -> a list of int pairs."""
    if len(style_hw) and isinstance(style_hw[0], int | float):
        return [(int(style_hw[0]), int(style_hw[1]))]
    return [(int(hw[0]), int(hw[1])) for hw in style_hw]


def _flops_at(resolved: StylizeConfig, hw) -> int:
    loss, flops = resolved.loss, 0
    for level_hw in pyramid_hws(hw, loss.pyramid_levels):
        # coarser levels run the extractor (to its deepest layer) and the Grams again
        counts = step_flops(*level_hw, loss.content_layers, loss.style_layers,
                            resolved.network.architecture)
        flops += counts["conv_total"] + counts["gram"]
    return flops


def step_flop_count(config, content_hw, size: int | None = None) -> int:
    """Convolution + Gram FLOPs of one step (``step_flops``) with the longer side at
    ``size`` (default: the result's), summed over the pyramid levels the style loss
    sees. ``config``: a ``StylizeConfig`` or a ``plan.RunPlan``."""
    resolved = _resolved(config)
    return _flops_at(resolved, fitted_hw(content_hw, size or resolved.result_size))


def step_seconds_at(resolved: StylizeConfig, hw) -> float:
    """Estimated seconds per step at exactly ``hw`` for a recipe-applied config
    (``plan.make_plan`` calls it per scale)."""
    rate = (STEP_GFLOPS[resolved.network.compute_dtype] * 1e9 * usable_cores()
            / CALIBRATION_CORES)
    return _flops_at(resolved, hw) / rate


def predict_step_seconds(config, content_hw, size: int | None = None) -> float:
    """Estimated seconds per step (FLOPs / calibrated rate), at ``size`` or the result's.

    An estimate: the rate is the one a step reached on ``CALIBRATION_MACHINE``, scaled by
    this machine's usable cores over ``CALIBRATION_CORES``. ``config``: a ``StylizeConfig``
    or a ``plan.RunPlan``.
    """
    rate = (STEP_GFLOPS[getattr(config, "config", config).network.compute_dtype] * 1e9
            * usable_cores() / CALIBRATION_CORES)
    return step_flop_count(config, content_hw, size) / rate


def predict_run_seconds(config, content_hw=None) -> float:
    """Estimated seconds of every step of a run, all scales (``predict_step_seconds``):
    a ``plan.RunPlan``'s ``seconds``, or those of a ``StylizeConfig``'s plan."""
    # the style images' sizes do not enter the time: plan with the content's
    return _plan(config, content_hw, [content_hw] if content_hw is not None else None).seconds


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def image_hw(source) -> tuple[int, int] | None:
    """(height, width) of an image file or bundled sample name from its header, or None.

    Reads only the header (Pillow opens lazily) and applies the EXIF orientation, so the
    size is the one ``images.load_image`` will return; None for anything else (arrays,
    missing or unreadable files: loading them reports the problem).
    """
    from nstlib.config import DATA_DIR

    try:
        path = Path(source)
        if not path.exists():  # a sample name ("chelsea") or a missing file
            found = [p for p in (DATA_DIR / f"{source}.jpg", DATA_DIR / f"{source}.png")
                     if "/" not in str(source) and p.is_file()]
            if not found:
                return None
            path = found[0]
        from PIL import Image

        with Image.open(path) as pil:
            width, height = pil.size
            orientation = pil.getexif().get(0x0112, 1)  # EXIF Orientation
    except Exception:  # noqa: BLE001 - unreadable, unsearchable...: the real load says why
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


# ----------------------------------------------------------------------------- availability


def available_bytes(meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup",
                    own_cgroups: str = "/proc/self/cgroup") -> int | None:
    """Memory a new allocation can get now, in bytes (None if unknown).

    Linux: ``MemAvailable`` of ``/proc/meminfo``; elsewhere ``psutil`` if installed. A
    cgroup limit wins when lower: for this process's cgroup and each one above it (v2
    ``memory.max``, v1 ``memory/…/memory.limit_in_bytes``), the limit less the usage plus
    the reclaimable page cache (``inactive_file``).
    """
    found = [v for v in (_meminfo_available(meminfo),
                         _cgroup_available(Path(cgroup_root), own_cgroups)) if v is not None]
    if not found:
        found = [v for v in (_psutil_available(),) if v is not None]
    return min(found) if found else None


def _meminfo_available(path: str) -> int | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: (folder under the cgroup root, limit file, usage file, page-cache key in memory.stat)
_CGROUP_FILES = (("", "memory.max", "memory.current", "inactive_file"),
                 ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                  "total_inactive_file"))


def _cgroup_available(root: Path, own_cgroups: str) -> int | None:
    """The tightest (limit − usage + inactive page cache) from this process's cgroup up."""
    paths = {"": "/", "memory": "/"}
    try:
        for line in Path(own_cgroups).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # the v2 hierarchy
                paths[""] = path
            elif "memory" in controllers.split(","):
                paths["memory"] = path
    except (OSError, ValueError):
        pass
    room = []
    for folder, limit_name, usage_name, cache_key in _CGROUP_FILES:
        parts = [p for p in paths[folder].split("/") if p]
        for depth in range(len(parts), -1, -1):
            here = root.joinpath(folder, *parts[:depth])
            limit = _read_int(here / limit_name)
            if limit is not None and limit < 2**60:  # "max" / v1's huge "no limit": none
                cache = _memory_stat(here / "memory.stat").get(cache_key, 0)
                room.append(max(0, limit - (_read_int(here / usage_name) or 0) + cache))
    return min(room) if room else None


def _memory_stat(path: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}
    except (OSError, ValueError):
        return {}


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _psutil_available() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


# ----------------------------------------------------------------------------- the check


def largest_size_that_fits(config, content_hw=None, style_hw=None,
                           available: int | None = None) -> int:
    """The largest longer side (``size``) whose predicted peak fits in ``available`` bytes
    (default: ``available_bytes()``).

    ``config`` is a ``plan.RunPlan`` or a ``StylizeConfig`` with the input sizes (as for
    ``predict_peak_bytes``). The run's other settings are kept; ``scales`` and an explicit
    ``style_size`` shrink in proportion (``RunPlan.at_size``). Returns 0 when not even
    1 px fits.
    """
    plan = _plan(config, content_hw, style_hw)
    available = available_bytes() if available is None else available

    def fits(size: int) -> bool:
        return plan.at_size(size).peak_bytes <= available

    if not fits(1):
        return 0
    low, high = 1, plan.size  # fits(low) holds; find the largest
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def check_fits(config, content_hw=None, style_hw=None, available: int | None = None,
               flag: str = "size") -> None:
    """Refuse a run whose predicted peak memory exceeds the available memory.

    Skipped when the available memory is unknown or TensorFlow sees a GPU (the model is
    for CPU runs).

    Args:
        config: The run's ``plan.RunPlan``, or a ``StylizeConfig`` with ``content_hw`` and
            ``style_hw`` as for ``predict_peak_bytes``.
        available: Bytes available (default: ``available_bytes()``).
        flag: How the message names the size ("size"; the CLI passes "--size").

    Raises:
        InsufficientMemoryError: one line, e.g. "--size 100000 needs about 1.2 TiB,
            21.3 GiB available; the largest size that fits is about 3300 px".
    """
    available = available_bytes() if available is None else available
    if available is None or _tensorflow_sees_gpu():
        return
    plan = _plan(config, content_hw, style_hw)
    if plan.peak_bytes <= available:
        return
    largest = largest_size_that_fits(plan, available=available)
    advice = (f"the largest size that fits is about {_round_down(largest)} px" if largest
              else "not even a 1 px image fits; free some memory")
    raise InsufficientMemoryError(f"{flag} {plan.size} needs about "
                                  f"{format_bytes(plan.peak_bytes)}, {format_bytes(available)} "
                                  f"available; {advice}")


def describe(config, content_hw=None, style_hw=None, available: int | None = None) -> list[str]:
    """The lines ``nst stylize --dry-run`` prints: result size, memory, time (estimates),
    the network and recipe (``describe_plan``).

    Args:
        config: The run's ``plan.RunPlan``, or a ``StylizeConfig`` with ``content_hw`` and
            ``style_hw`` as for ``predict_peak_bytes``.
        available: Bytes available (None: unknown).
    """
    plan = _plan(config, content_hw, style_hw)
    height, width = plan.result_hw
    free = "unknown" if available is None else format_bytes(available)
    network = plan.config.network
    return [
        f"result {width}x{height} px, {network.compute_dtype}, "
        f"{plan.config.optim.optimizer}, {plan.total_steps} steps",
        f"predicted peak memory: {format_bytes(plan.peak_bytes)} (CPU run; available: "
        f"{free})",
        f"seconds per step (estimated): {format_seconds(plan.stages[-1].step_seconds)}; all "
        f"steps (estimated): {format_seconds(plan.seconds)}",
        f"(time estimated from the step rate measured on {CALIBRATION_MACHINE}, scaled to "
        f"{usable_cores()} cores here)",
        describe_plan(plan),
    ]


def describe_plan(config) -> str:
    """One line: the network, weights and recipe settings a run is planned with.

    ``config``: a ``plan.RunPlan``, or a ``StylizeConfig`` (planned with the source
    ``weight_sources.likely_source`` expects). A source the run has not found yet is
    marked "(expected)" for ``weights="auto"``; the run itself says in one line what it
    found.
    """
    from nstlib.plan import RunPlan, resolve_config

    if isinstance(config, RunPlan):
        resolved, source, found = config.config, config.weights_source, config.weights_found
    else:
        resolved, weights = resolve_config(config)
        source, found = weights.source, False
    network, loss = resolved.network, resolved.loss
    expected = " (expected)" if network.weights == "auto" and not found else ""
    return (f"network: {network.architecture.upper()}, weights {source}{expected}, recipe "
            f"{recipe_for(source)}: {network.pooling} pooling, content "
            f"{','.join(loss.content_layers)}, style {','.join(loss.style_layers)}, "
            f"α {loss.content_weight:g}, β {loss.style_weight:g}, γ {loss.tv_weight:g}")


def format_seconds(seconds: float) -> str:
    """"0.42 s", "42 s", "3.5 min", "12 h", "2700 h"."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.2g} min"
    hours = seconds / 3600
    return f"{hours:.2g} h" if hours < 100 else f"{hours:.0f} h"


def _tensorflow_sees_gpu() -> bool:
    """True if TensorFlow is already imported and lists a GPU (never imports it)."""
    tf = sys.modules.get("tensorflow")
    config = getattr(tf, "config", None)
    try:
        return bool(config and config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001 - a half-imported TensorFlow: assume a CPU run
        return False


def _round_down(size: int) -> int:
    """``size`` rounded down to two significant digits (3374 -> 3300, 87 -> 87)."""
    if size < 100:
        return size
    step = 10 ** (int(math.log10(size)) - 1)
    return size // step * step


def format_bytes(count: float) -> str:
    """"1.2 TiB", "21.3 GiB", "512 MiB" (binary units, three significant digits)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if count >= scale:
            value = count / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{count / 2**10:.3g} KiB"
