"""The pages and the pair review in a real browser: headless Chromium (Debian's) driven by selenium.

Nothing is downloaded: the browser and its driver are the system's (``apt-get install chromium
chromium-driver``; ``make test`` installs them where it can), and they start with every
background network feature off. The tests skip, saying why, where either is missing.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers.cli import invoke
from vectune.pipeline.pairs import rejections, review

DRIVER = "/usr/bin/chromedriver"
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--window-size=1280,900")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    if not os.path.exists(DRIVER):
        return f"no {DRIVER}: apt-get install chromium chromium-driver (make test does it as root)"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium browser: apt-get install chromium chromium-driver"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        opts.binary_location = binary
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _by_css(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _fetched(driver) -> list:
    """Every resource the page loaded after the document itself (images, styles, scripts, fonts...)."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


# --------------------------------------------------------------------------- pages from disk
def _reports(tmp_path):
    from tests.observe.test_pages import _promoted
    from vectune.observe.report import write

    promoted = _promoted()
    kept = _promoted(run_id="20260102T030000Z-bbbbbb", started_at="2026-01-02T03:00:00+00:00", status="kept",
                     reason="ndcg@10 gain +0.0010 is within noise", new_collection=None)
    write(promoted, tmp_path, events=[])
    events = [{"time": "2026-01-01T03:05:00+00:00", "event": "promotion", "run_id": promoted["run_id"]}]
    paths = write(kept, tmp_path, events=events)
    return promoted, kept, paths


def test_report_and_history_pages_load_from_disk_with_no_network(browser, tmp_path):
    promoted, kept, paths = _reports(tmp_path)
    browser.get((tmp_path / f"{promoted['run_id']}.html").as_uri())
    banner = _by_css(browser, "#decision")[0]
    assert "PROMOTED" in banner.text and "now serves docs--m-ft-1-query" in banner.text
    forest = _by_css(browser, "#deltas svg.forest")[0]
    assert forest.size["width"] > 400 and forest.size["height"] > 100  # drawn, not just present
    assert "ndcg@10" in forest.text and "min delta +0.005" in forest.text
    assert _by_css(browser, "#training svg.lines") and _by_css(browser, "#pairs table tr")
    assert _fetched(browser) == []  # nothing loaded beyond the file itself

    browser.get(paths["html"].as_uri())
    assert "KEPT LIVE" in _by_css(browser, "#decision")[0].text
    assert "banner neutral" in _by_css(browser, "#decision")[0].get_attribute("class")

    browser.get(paths["history"].as_uri())
    assert "Live now: docs--m-ft-1-query" in _by_css(browser, "#decision")[0].text
    assert _by_css(browser, "#trend svg.lines")[0].size["height"] > 150
    assert _fetched(browser) == []
    _by_css(browser, f"a[href='{promoted['run_id']}.html']")[0].click()  # the timeline links each run's page
    assert browser.current_url.endswith(f"{promoted['run_id']}.html")


# --------------------------------------------------------------------------- review
def _click(browser, what, pair_id):
    _by_css(browser, f"#reject-{what}-{pair_id} button")[0].click()
    deadline = time.time() + 10
    while time.time() < deadline and not _by_css(browser, "#message"):
        time.sleep(0.05)
    return _by_css(browser, "#message")[0].text


def _pick(rows):
    """Two pairs and a query to reject, all of different queries (so each counts on its own)."""
    by_query: dict[str, dict] = {}
    for r in rows:
        by_query.setdefault(review.normalize_query(r["query"]), r)
    picks = list(by_query.values())
    assert len(picks) >= 3, "the sample needs three distinct queries"
    return picks[0], picks[1], picks[2]


def test_review_page_rejects_two_pairs_and_a_query(browser, tmp_path):
    from tests.ops.test_review_server import ROWS
    from vectune.ops.review_server import ReviewServer

    review.write_run_sample(tmp_path, ROWS)
    with ReviewServer(tmp_path, "docs").start() as server:
        browser.get(server.url)
        assert len(_by_css(browser, "button.pair")) == len(ROWS)
        p1, p2, q = ROWS[2], ROWS[3], ROWS[0]
        assert "Rejected pair" in _click(browser, "pair", p1["pair_id"])
        assert "Rejected pair" in _click(browser, "pair", p2["pair_id"])
        assert "Rejected every pair of the query" in _click(browser, "query", q["pair_id"])
        assert "2 pairs and 1 whole queries" in _by_css(browser, "#counts")[0].text
        assert len(_by_css(browser, "tr.rej")) == 4  # both pairs of the rejected query are struck through
    rej = rejections.Rejections(tmp_path)
    assert rej.counts() == {"pairs": 2, "queries": 1}
    assert all(rej.row_rejected(r) for r in ROWS)


def test_review_page_without_the_token_is_forbidden(browser, tmp_path):
    from tests.ops.test_review_server import ROWS
    from vectune.ops.review_server import ReviewServer

    review.write_run_sample(tmp_path, ROWS)
    with ReviewServer(tmp_path, "docs").start() as server:
        browser.get(server.url.split("?")[0])
        assert "403 Forbidden" in _by_css(browser, "body")[0].text
        assert not _by_css(browser, "button")
        browser.get(server.url.replace("token=", "token=x"))
        assert "403 Forbidden" in _by_css(browser, "body")[0].text


@pytest.mark.slow
def test_clicks_in_the_browser_change_what_the_next_cycle_trains_on(browser, indexed, home, corpus_records,
                                                                      monkeypatch):
    from tests.pipeline.test_cycle_feedback import _latest, _log

    monkeypatch.setenv("VECTUNE_MODE", "query")
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_GOLDEN", "5")
    monkeypatch.setenv("VECTUNE_FEEDBACK_MIN_TRAIN", "5")
    _log(corpus_records, 30)
    invoke("run", "--alias", "docs", "--dry-run")
    before = _latest(home)
    assert not (before["counts"].get("rejected") or {}).get("kept_rejections")
    rows = review.read_run_sample(home / "work" / "runs" / "docs")
    p1, p2, q = _pick(rows)

    proc = subprocess.Popen([sys.executable, "-m", "vectune.cli", "review", "--alias", "docs", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=120), "vectune review printed nothing in 2 minutes"
        line = proc.stdout.readline()
        url = line[line.index("http://"):].split()[0]
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        browser.get(url)
        _click(browser, "pair", p1["pair_id"])
        _click(browser, "pair", p2["pair_id"])
        _click(browser, "query", q["pair_id"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = home / "work" / "runs" / "docs" / review.REJECTIONS_FILE
    recs = [json.loads(x) for x in store.read_text().splitlines()]
    assert sorted(r["kind"] for r in recs) == ["pair", "pair", "query"]

    invoke("run", "--alias", "docs", "--dry-run")
    after = _latest(home)
    rej = after["counts"]["rejected"]
    assert rej["kept_rejections"] == {"pairs": 2, "queries": 1}
    assert rej["labeled_queries"] + rej["train"] >= 3  # all three left the training data
    sample = {r["pair_id"] for r in review.read_run_sample(home / "work" / "runs" / "docs")}
    assert not sample & {p1["pair_id"], p2["pair_id"], q["pair_id"]}
    # and the next report page says so
    page = (home / "work" / "reports" / "docs" / f"{after['run_id']}.html").as_uri()
    browser.get(page)
    assert "2 pairs and 1 whole queries are vetoed" in _by_css(browser, "#pairs")[0].text
