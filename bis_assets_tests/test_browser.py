"""The Dagster UI in headless Chromium: the asset's partitions and its check results."""

import re
import shutil
from pathlib import Path

import pytest

from bis_assets_tests.dagster_dev import (
    ACCOUNTS,
    CHECK_NAMES,
    DagsterSite,
)

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the rest keep the browser from calling out anywhere.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 30_000

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)


@pytest.fixture
def browser_page(tmp_path: Path):
    """A page of Debian's Chromium with a fresh profile, driven by Playwright."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path / "profile",
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def test_asset_page_shows_partitions_and_checks(
    dagster_site: DagsterSite, browser_page, tmp_path: Path
) -> None:
    asset_url = f"{dagster_site.dev.url}/assets/back_in_stock_notifications"
    # A first visit gets a newsletter dialog over the page; a person would skip it.
    skip = browser_page.get_by_role("button", name="Skip")
    browser_page.add_locator_handler(skip, lambda: skip.click())

    browser_page.goto(f"{asset_url}?view=partitions")
    browser_page.get_by_text("Materialized (2)").wait_for()
    browser_page.get_by_text(ACCOUNTS[0], exact=True).first.click()
    browser_page.get_by_text("colliding_identities").first.wait_for()
    partition_text = browser_page.locator("body").inner_text()
    browser_page.screenshot(path=tmp_path / "asset-partition.png", full_page=True)

    browser_page.goto(f"{asset_url}?view=checks")
    for name in CHECK_NAMES:
        browser_page.get_by_text(name, exact=True).first.wait_for()
    browser_page.get_by_text("Succeeded").nth(len(CHECK_NAMES) - 1).wait_for()
    checks_text = browser_page.locator("body").inner_text()
    browser_page.screenshot(path=tmp_path / "asset-checks.png", full_page=True)

    # The first check's result per partition, from the run that synced both.
    browser_page.locator("button[role=tab]", has_text="Partitions").click()
    browser_page.get_by_text(ACCOUNTS[-1], exact=True).first.wait_for()
    browser_page.get_by_text(re.compile(r"Passed\s*\(2\)")).wait_for()
    check_partitions_text = " ".join(browser_page.locator("body").inner_text().split())
    browser_page.screenshot(path=tmp_path / "check-partitions.png", full_page=True)

    assert all(account in partition_text for account in ACCOUNTS)
    assert "rows_fetched" in partition_text
    assert checks_text.count("Succeeded") >= len(CHECK_NAMES)
    assert "Failed" not in checks_text
    assert all(account in check_partitions_text for account in ACCOUNTS)
    # Both partitions passed, none left skipped by the run that synced both.
    assert "Passed (2)" in check_partitions_text
    assert "Skipped (0)" in check_partitions_text
