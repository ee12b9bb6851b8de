"""Options shared by the command-line sub-apps."""

from __future__ import annotations

import os

DEFAULT_WORKDIR = os.environ.get("SCALELAB_WORKDIR", "scalelab-work")
