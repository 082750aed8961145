"""Headless Debian chromium under selenium, for the console's browser test.

The binaries are the distribution's (deploy/dev/chromium.sh installs them when
missing, as ``make test`` does); selenium is given the driver's path, so its
manager never downloads a browser or a driver.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def ensure_installed() -> None:
    """Install chromium and chromium-driver (apt) if either is missing; fail if that fails."""
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/dev/chromium.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cannot install chromium: {out.stderr[-2000:]}")


def headless_chrome(width: int = 1280, height: int = 1000):
    """A new headless chromium session (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager would fetch a browser or driver it cannot find: forbid it outright.
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        # Root (CI) has no user namespace sandbox to drop into; /dev/shm is small in containers.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
