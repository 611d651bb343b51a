"""Headless Chromium driven by Selenium, for tests of the pages we write (Debian's chromium and chromium-driver,
which .ci/run installs; tests skip with the reason where they are absent)."""

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def missing():
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"no {program} on PATH (Debian: apt-get install chromium chromium-driver, as .ci/run does)"
    return None


@contextmanager
def chromium(downloads):
    """A headless Chromium whose downloads land in `downloads`, closed afterwards."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def downloaded(folder, name, timeout=20):
    """The path of a finished download `name` in `folder`, waiting for it up to `timeout` seconds."""
    path = Path(folder) / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not list(Path(folder).glob("*.crdownload")):
            return path
        time.sleep(0.2)
    raise AssertionError(f"{name} was not downloaded to {folder} within {timeout} s: {list(Path(folder).iterdir())}")


def label_cells(page, downloads, classes):
    """Open the labelling `page`, label its cells through the page's controls and save: the first cell by its
    button for classes[0], the next by the number key 2 (classes[1]), the fourth by a click and the key 1; the
    third stays empty. Returns the saved sheet's path and {cell index: class} as labelled."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with chromium(downloads) as driver:
        driver.get(Path(page).resolve().as_uri())
        driver.find_element(By.CSS_SELECTOR, f'#cell-0 button.assign[data-class="{classes[0]}"]').click()
        ActionChains(driver).send_keys("2").perform()  # the selection moved on to cell 1
        driver.find_element(By.CSS_SELECTOR, "#cell-3 img").click()
        ActionChains(driver).send_keys("1").perform()
        assert driver.find_element(By.ID, "count").text.startswith("3 of ")
        driver.find_element(By.ID, "save").click()
        return downloaded(downloads, "label_next.tsv"), {0: classes[0], 1: classes[1], 3: classes[0]}
