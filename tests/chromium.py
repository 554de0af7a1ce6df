"""Debian's Chromium for the browser tests: where it is, the flags it runs with, and the skip
mark for a machine without it (.ci/run installs the `chromium` package). Always Debian's
binary, never a browser some other tool downloaded into the PATH."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM = str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else (shutil.which("chromium") or str(DEBIAN_CHROMIUM))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

browser_test = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
