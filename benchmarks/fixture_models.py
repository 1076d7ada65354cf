"""The fixture checkpoints of the test suite, for the device check's --quick stages: both
device_stages.py and device_timing.py read them from here (neither imports the other)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).parents[1] / "tests"


def fixtures_module():
    """tests/conftest.py, which materializes the fixture checkpoints (needs pytest importable)."""
    sys.path.insert(0, str(TESTS))
    import conftest

    return conftest
