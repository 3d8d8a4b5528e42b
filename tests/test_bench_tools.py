"""bench/inprocess.py, the in-process harness teammates tune the hot path with, keeps working."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("scenario", ["plain", "offload-local"])
def test_the_in_process_harness_proxies_every_request(scenario: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "inprocess.py"), "--scenario", scenario, "--requests", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("forecourt: ")
    # It asserts itself that every request got its response; here only the report's shape.
    found = re.fullmatch(rf"(\d+\.\d\d) µs per request \(best of 5 x 50, {scenario}\)", lines[-1])
    assert found is not None and float(found.group(1)) > 0
