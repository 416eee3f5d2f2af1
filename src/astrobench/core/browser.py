"""Looking at reports in a headless Chromium (Selenium): what a reader sees, checked by the tests and photographed
for the documentation (``python -m astrobench.core.browser RUNS_DIR OUT_DIR``).

Needs ``selenium`` and Debian's ``chromium`` and ``chromium-driver`` (or another Chromium with its driver on the
PATH); nothing here is needed to run a task.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH_PX, MAX_HEIGHT_PX = 1280, 3200

# run in the page: the answer blocks, the images that did not decode, the cells whose text runs out of them
_INSPECT = """
const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0
                        && getComputedStyle(el).visibility !== 'hidden' && el.innerText.trim().length > 0; };
const answers = [...document.querySelectorAll('.answer')].filter(visible);
const tables = [...document.querySelectorAll('table.headline')];
const top = el => el.getBoundingClientRect().top + window.scrollY;
const images = [...document.images];
const shown = c => c.closest('details') === null || c.closest('details').open;
const cells = [...document.querySelectorAll('td, th')].filter(shown);
return {
  answers_visible: answers.length,
  answer_above_tables: answers.length > 0 && tables.every(t => top(answers[0]) < top(t)),
  images: images.length,
  broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 40)),
  overflowing: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText.slice(0, 60)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  height: document.documentElement.scrollHeight,
};
"""


def find_browser() -> tuple[str, str] | None:
    """(Chromium binary, chromedriver) found on the PATH, or None."""
    binary = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def open_browser(binary: str, driver: str) -> Any:
    """A headless Chromium, 1280 px wide, driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH_PX},1000", "--hide-scrollbars"):
        options.add_argument(arg)
    options.binary_location = binary
    return webdriver.Chrome(service=Service(driver), options=options)


def inspect_page(driver: Any, page: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Open ``page``; return what a reader sees (answer blocks shown and above the headline tables, images and the
    ones that did not decode, cells whose text overflows, links); with ``screenshot``, save the page's top
    (up to 3,200 px) as PNG there."""
    driver.set_window_size(WIDTH_PX, 1000)
    driver.get(Path(page).resolve().as_uri())  # returns once the page has loaded
    seen = driver.execute_script(_INSPECT)
    if screenshot is not None:
        driver.set_window_size(WIDTH_PX, min(int(seen["height"]) + 40, MAX_HEIGHT_PX))
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    return seen


def screenshots(runs: Path, out: Path) -> list[Path]:
    """One screenshot per task's report under ``runs`` (``runs/TASK/NAME/report.html``, the first run of each
    task) and of the newest demo index there, into ``out``; returns the files."""
    found = find_browser()
    if found is None:
        raise SystemExit("no Chromium and chromedriver on the PATH (Debian: apt-get install chromium chromium-driver)")
    driver = open_browser(*found)
    written: list[Path] = []
    try:
        for report in sorted(runs.glob("*/*/report.html")):
            task = report.parent.parent.name
            if not any(p.stem == task for p in written):
                written.append(out / f"{task}.png")
                inspect_page(driver, report, screenshot=written[-1])
        indexes = sorted(runs.glob("index-*.html"))
        if indexes:
            written.append(out / "index.png")
            inspect_page(driver, indexes[-1], screenshot=written[-1])
    finally:
        driver.quit()
    return written


if __name__ == "__main__":
    for path in screenshots(Path(sys.argv[1]), Path(sys.argv[2])):
        print(path)
