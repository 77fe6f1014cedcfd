"""Headless Chromium for the survey page's tests, benchmark and screenshots (Debian's chromium and
chromium-driver, driven by selenium). Loaded by path: ``web/`` is not a Python package."""

from __future__ import annotations

import shutil
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PHONE = (390, 844)  # CSS pixels of a common phone
DESKTOP = (1280, 900)


def missing() -> str | None:
    """Why Chromium cannot run here, or None."""
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: apt-get install -y chromium chromium-driver (.ci/run does it)"
    return None


def chromium(size: tuple[int, int] = DESKTOP, scale: float = 1.0) -> webdriver.Chrome:
    """A fresh headless Chromium (its own profile: empty localStorage) at ``size`` CSS pixels.

    TLS errors are ignored: the aggregators' certificates come from the survey's own test CA on loopback."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--ignore-certificate-errors",
        "--no-first-run",
        f"--window-size={size[0]},{size[1]}",
        f"--force-device-scale-factor={scale}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": size[0],
            "height": size[1],
            "deviceScaleFactor": scale,
            "mobile": size[0] < 600,
        },
    )
    return driver


def until(predicate, what: str = "the page", timeout: float = 60, poll: float = 0.02):
    """Poll ``predicate`` until it returns something true and return that (AssertionError naming ``what``
    after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
