"""``python -m streamhouse_beam.cli``: the ``streamhouse-beam`` command without the script."""

from __future__ import annotations

import sys

from streamhouse_beam.cli import main

sys.exit(main())
