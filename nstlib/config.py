"""Project-wide settings read once: quick mode and where the repository's data lives.

Everything that depends on the environment is read here and nowhere else, so a
notebook, a test and the CLI agree on what "quick" means.
"""

from __future__ import annotations

import os
from pathlib import Path

#: True when ``NST_QUICK`` is set to a truthy value ("1", "true", "yes"). Notebooks use it
#: in their first code cell (``SIZE = 64 if QUICK else 256``); CI runs with it on.
QUICK: bool = os.environ.get("NST_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}

#: Root of the source checkout (the folder that holds ``nstlib/`` and ``data/``).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent

#: Bundled sample images; ``NSTLIB_DATA`` overrides it (e.g. for a non-editable install).
DATA_DIR: Path = Path(os.environ.get("NSTLIB_DATA", REPO_ROOT / "data"))

#: Environment variable naming a local VGG19 notop ``.h5`` file (ImageNet weights).
WEIGHTS_ENV_VAR = "NSTLIB_VGG19_WEIGHTS"


def quick(quick_value, full_value):
    """Pick a value by mode: ``quick(64, 256)`` is 64 under ``NST_QUICK=1``, else 256."""
    return quick_value if QUICK else full_value
