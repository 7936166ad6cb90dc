"""Quality workspace tests run on SQLite and PostgreSQL (fixtures of tests/conftest.py); helpers in population.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
