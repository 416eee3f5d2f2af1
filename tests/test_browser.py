"""The reports as a reader sees them: a demo's index and a task's report opened in headless Chromium.

Skips, saying why, where no Chromium and chromedriver are installed (Debian: ``apt-get install chromium
chromium-driver``; `.ci/run` installs them) or Selenium is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from astrobench.core.browser import find_browser, inspect_page, open_browser

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="Selenium is not installed (pip install selenium)")
    found = find_browser()
    if found is None:
        pytest.skip("no Chromium and chromedriver on this machine (Debian: apt-get install chromium chromium-driver)")
    driver = open_browser(*found)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory) -> Path:
    from astrobench.runner import demo

    return demo(tmp_path_factory.mktemp("demo"), seed=0, progress=False, size="smoke",
                tasks=["sn_lasso", "cluster_mass"])


def test_demo_index_shows_every_answer_and_links_that_open(browser, demo_index):
    page = inspect_page(browser, demo_index)
    assert page["answers_visible"] == 2 and page["overflowing"] == []
    for link in page["links"]:
        assert Path(link.removeprefix("file://")).is_file(), link


def test_a_report_leads_with_its_answer_and_every_image_decodes(browser, demo_index, tmp_path):
    report = next(demo_index.parent.glob("cluster_mass/demo-*/report.html"))
    page = inspect_page(browser, report, screenshot=tmp_path / "report.png")
    assert page["answers_visible"] == 1 and page["answer_above_tables"]
    assert page["images"] >= 3 and page["broken_images"] == []  # every figure decoded (natural width > 0)
    assert page["overflowing"] == []  # no text runs out of its cell
    assert (tmp_path / "report.png").stat().st_size > 10_000
