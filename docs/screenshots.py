"""Screenshots of the report and history pages for the README, from real runs' reports.

Run the two demos first (``vectune demo`` promotes on SciFact, then rolls back;
``vectune demo --corpus pydoc`` keeps the live model), then a few more nights on ``scifact-demo``
(``vectune run --alias scifact-demo --candidates linear``, then ``vectune run --alias scifact-demo
--query-epochs 4`` twice: kept, promoted, nothing to do), then::

    python docs/screenshots.py --work-dir .vectune/work

It renders, from the JSON reports and the history on disk (nothing is made up):

- ``docs/report-promoted.png``: the page of the SciFact alias's latest promotion that is still live;
- ``docs/report-rollback.png``: the page of a promotion that was rolled back (the demo's own rollback), as
  ``vectune report`` rewrites it after the rollback;
- ``docs/report-kept.png``: the pydoc run's page (the gain was within noise: kept);
- ``docs/history.png``: the SciFact alias's history page;
- ``docs/review.png``: ``vectune review`` serving the SciFact run's pair sample (nothing clicked).

Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``) takes the shots; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vectune.observe import pages

ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1")


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ARGS + (f"--user-data-dir={tempfile.mkdtemp(prefix='vectune-shots-')}",):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def shoot(driver, html_file: Path, out: Path, width: int = 1280, max_height: int = 2000) -> None:
    """Load a page from disk and save the top ``max_height`` pixels of it as PNG."""
    driver.set_window_size(width, 900)
    driver.get(html_file.resolve().as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height, max_height))
    driver.save_screenshot(str(out))
    print(f"{out} ({width}x{min(height, max_height)} of {height})")


def _latest(folder: Path, status: str) -> dict:
    runs = [r for r in pages.read_reports(folder) if r.get("status") == status]
    if not runs:
        raise SystemExit(f"no {status} run in {folder}: run the demo first")
    return runs[-1]


def _events(work: Path, alias: str) -> list[dict]:
    path = work / "history" / f"{alias}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=Path(".vectune/work"))
    ap.add_argument("--promoted-alias", default="scifact-demo")
    ap.add_argument("--kept-alias", default="pydoc-demo")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    a = ap.parse_args()
    work, out = a.work_dir, a.out
    tmp = Path(tempfile.mkdtemp(prefix="vectune-pages-"))
    promo_dir = work / "reports" / a.promoted_alias
    events = _events(work, a.promoted_alias)
    undone = {e.get("from") for e in events if e.get("event") == "rollback"}
    promoted_runs = [r for r in pages.read_reports(promo_dir) if r.get("status") == "promoted"]
    rolled = [r for r in promoted_runs if r.get("new_collection") in undone]
    live = [r for r in promoted_runs if r.get("new_collection") not in undone]
    if not rolled or not live:
        raise SystemExit(f"{promo_dir} needs a promotion that was rolled back and one that was not")
    (tmp / "promoted.html").write_text(pages.report_page(live[-1], events=events))
    (tmp / "rollback.html").write_text(pages.report_page(rolled[-1], events=events))
    kept = _latest(work / "reports" / a.kept_alias, "kept")
    (tmp / "kept.html").write_text(pages.report_page(kept, events=_events(work, a.kept_alias)))
    history = pages.write_history_page(promo_dir, a.promoted_alias, events)
    from vectune.ops.review_server import ReviewServer

    driver = _driver()
    try:
        shoot(driver, tmp / "promoted.html", out / "report-promoted.png")
        shoot(driver, tmp / "rollback.html", out / "report-rollback.png", max_height=1100)
        shoot(driver, tmp / "kept.html", out / "report-kept.png")
        shoot(driver, history, out / "history.png")
        with ReviewServer(work / "runs" / a.promoted_alias, a.promoted_alias).start() as server:  # reads, clicks nothing
            driver.set_window_size(1280, 1000)
            driver.get(server.url)
            driver.save_screenshot(str(out / "review.png"))
            print(f"{out / 'review.png'} (1280x1000)")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
