"""``python -m nstlib.cli ARGS`` runs ``nst ARGS``."""

import sys

from nstlib.cli import main

sys.exit(main())
