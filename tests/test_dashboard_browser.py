"""The dashboard in a real Chromium (headless, driven by Selenium through Debian's
``chromium-driver``) against ``spikard-tasks dashboard`` and a real worker process on a
SQLite file: counts change as jobs run, a failed job's traceback opens, retrying it
makes it succeed, pausing a queue stops claims and resuming starts them again.

``SPIKARD_TASKS_SCREENSHOTS=1`` writes ``docs/dashboard-overview.png`` and
``docs/dashboard-job.png`` (the README shows them)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import TaskQueue

from .conftest import skip_or_fail
from .ops_servers import APP, HttpServer, start_http, start_ops_worker, stop_http, stop_ops_worker
from .procs import REPO

pytestmark = pytest.mark.timeout(240)

CHROMIUM = os.environ.get("SPIKARD_TASKS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SPIKARD_TASKS_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("SPIKARD_TASKS_SCREENSHOTS") == "1"
WAIT = 30.0


def _browser() -> Any:
    """A headless Chromium, or skip (fail with SPIKARD_TASKS_REQUIRE_BACKENDS=1)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install selenium)")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(program) or shutil.which(program)):
            skip_or_fail(f"{program} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, check: Callable[[Any], Any], what: str) -> Any:
    """Waits up to 30 s for ``check(driver)`` to be true; its value."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(
            driver, WAIT, ignored_exceptions=[StaleElementReferenceException]
        ).until(check)
    except TimeoutException:
        logs = driver.get_log("browser")
        raise AssertionError(f"timed out waiting for {what}; browser log: {logs}") from None


def fresh(read: Callable[[], Any]) -> Any:
    """``read()``, run again when the page's live refresh replaced an element between
    finding it and using it (the dashboard re-renders every 2 s)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(50):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return read()


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    def read() -> str:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return str(found[0].text) if found else ""

    return str(fresh(read))


def count(driver: Any, state: str) -> int | None:
    value = text(driver, f'[data-count="{state}"] .card-value').replace(",", "")
    return int(value) if value.isdigit() else None


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    def press(d: Any) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, css)
        if not found:
            return False
        found[0].click()  # a stale element (a refresh in between) is found and pressed again
        return True

    until(driver, press, css)


def confirm(driver: Any) -> None:
    """Answers the confirmation dialog with its confirm button."""
    from selenium.webdriver.common.by import By

    until(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None,
          "the confirmation dialog")  # fmt: skip
    driver.find_element(By.ID, "confirm-ok").click()
    until(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is None,
          "the dialog to close")  # fmt: skip


def test_dashboard_in_chromium_against_a_real_worker(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    name = f"web-{uuid.uuid4().hex[:8]}"
    queue = TaskQueue(url, queue=name, environment=False)
    queue.enqueue("ops.ok", [0], strict=False)  # creates the file the command needs
    server: HttpServer = start_http(url, name, tmp_path / "dash.log", "dashboard", f"{APP}:queue")
    worker = start_ops_worker(url, name, "--concurrency", "2")
    try:
        browser.get(server.base + "/")
        until(browser, lambda d: count(d, "succeeded") == 1, "the first job to show as succeeded")
        assert text(browser, f'tr[data-queue="{name}"] th').startswith(name)
        until(
            browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-worker]"), "a worker row"
        )

        # counts change as jobs run
        for n in range(1, 6):
            queue.enqueue("ops.ok", [n], strict=False)
        until(browser, lambda d: count(d, "succeeded") == 6, "six succeeded jobs")

        # a failed job: find it in the list, open its traceback
        marker = tmp_path / "flaky.marker"
        failed = queue.enqueue("ops.flaky", [str(marker)], strict=False, max_attempts=1)
        until(browser, lambda d: count(d, "failed") == 1, "the failed count")
        click(browser, '[data-nav="failed"]')
        row = f'tr[data-job="{failed.id}"] a'
        click(browser, row)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "details[data-attempt]"),
              "the attempt's traceback")  # fmt: skip

        def opened_traceback(d: Any) -> str:
            details = d.find_element(By.CSS_SELECTOR, 'details[data-attempt="1"]')
            if details.get_attribute("open") is None:
                details.find_element(By.TAG_NAME, "summary").click()
            return str(details.find_element(By.CSS_SELECTOR, "pre.traceback").text)

        traceback = until(browser, opened_traceback, "the opened traceback")
        assert "Traceback (most recent call last)" in traceback
        assert "RuntimeError: first run fails" in traceback
        assert text(browser, ".job-status .badge") == "failed"
        assert str(marker) in text(browser, 'pre[data-field="args"]')
        if SCREENSHOTS:
            browser.set_window_size(1280, 1500)
            time.sleep(0.5)
            browser.save_screenshot(str(REPO / "docs" / "dashboard-job.png"))
            browser.set_window_size(1280, 900)

        # retry it from the page: it succeeds the second time
        click(browser, 'button[data-action="retry"]')
        confirm(browser)
        until(browser, lambda d: text(d, ".job-status .badge") == "succeeded", "the retried job")
        assert "recovered" in text(browser, 'pre[data-field="result"]')
        assert queue.get_job(failed.id).info().result == "recovered"  # type: ignore[union-attr]

        # pause the queue: a new job stays pending; resume: it runs
        click(browser, '[data-nav="overview"]')
        click(browser, f'tr[data-queue="{name}"] button[data-action="pause"]')
        confirm(browser)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-paused="{name}"]'),
              "the paused badge")  # fmt: skip
        assert queue.paused() == [name]
        time.sleep(0.5)  # workers see a pause within one poll interval (0.05 s here)
        held = queue.enqueue("ops.ok", [21], strict=False)
        until(browser, lambda d: count(d, "pending") == 1, "the held job as pending")
        time.sleep(1.5)  # many poll intervals of the worker, and a refresh of the page
        assert held.status().value == "pending"
        assert count(browser, "pending") == 1
        click(browser, f'tr[data-queue="{name}"] button[data-action="resume"]')
        confirm(browser)
        until(browser, lambda d: count(d, "pending") == 0 and count(d, "succeeded") == 8,
              "the held job to run after resume")  # fmt: skip
        assert held.result(timeout=10) == 42
        assert not browser.find_elements(By.CSS_SELECTOR, f'[data-paused="{name}"]')

        # keyboard: Enter opens the confirmation on its Cancel button, Escape backs out
        from selenium.webdriver.common.keys import Keys

        fresh(lambda: browser.find_element(
            By.CSS_SELECTOR, f'tr[data-queue="{name}"] [data-action="pause"]'
        ).send_keys(Keys.ENTER))  # fmt: skip
        until(browser, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None,
              "the dialog from the keyboard")  # fmt: skip
        assert browser.switch_to.active_element.get_attribute("id") == "confirm-cancel"
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        until(browser, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is None,
              "Escape to close the dialog")  # fmt: skip
        assert queue.paused() == []

        # a queue's limit shows in the limits table, and the table goes when it is removed
        queue.limit(name, max_running=2, rate_limit="5/s")
        row = f'tr[data-limit="queue:{name}"]'
        until(browser, lambda d: "5/s" in text(d, row), "the queue's limit in the table")
        assert text(browser, f"{row} th") == name
        assert [c for c in text(browser, row).split() if c.isdigit()] == ["2", "0"]
        assert text(browser, row).endswith(("now", "in <1s"))  # when the rate allows a start
        assert fresh(lambda: browser.find_element(By.ID, "limits").is_displayed())
        queue.limit(name)
        until(browser, lambda d: not d.find_element(By.ID, "limits").is_displayed(),
              "the limits table to go")  # fmt: skip

        # live refresh can be paused from the page
        def toggle_live() -> str:
            toggle = browser.find_element(By.ID, "live-toggle")
            toggle.click()
            return str(toggle.get_attribute("aria-pressed"))

        assert fresh(toggle_live) == "false"
        assert fresh(toggle_live) == "true"
        if SCREENSHOTS:
            for n in range(12):
                queue.enqueue("ops.ok", [n], strict=False)
                queue.enqueue("ops.slow", [0.4], strict=False)
            queue.enqueue("ops.boom", ["card declined"], strict=False, max_attempts=1)
            queue.enqueue("ops.ok", [1], strict=False, delay=3600)
            time.sleep(6)
            browser.save_screenshot(str(REPO / "docs" / "dashboard-overview.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        stop_ops_worker(worker)
        stop_http(server)
        queue.close()


def test_dashboard_escapes_job_data_and_reads_on_a_phone(browser: Any, tmp_path: Path) -> None:
    """Arguments and errors that look like HTML are shown as text, never run; at 375 px
    the page needs no horizontal scrolling outside its tables."""
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    name = f"web-{uuid.uuid4().hex[:8]}"
    payload = (
        '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    )
    with TaskQueue(url, queue=name, environment=False) as queue:
        job = queue.enqueue(payload, [payload], strict=False)
    server = start_http(url, name, tmp_path / "dash.log", "dashboard", "--url", url, "--read-only")
    try:
        browser.set_window_size(375, 812)
        browser.get(f"{server.base}/#/jobs/{job.id}")
        until(browser, lambda d: text(d, 'pre[data-field="args"]'), "the job's arguments")
        assert json.loads(text(browser, 'pre[data-field="args"]')) == [payload]
        assert text(browser, ".job-head h1") == payload
        assert browser.title != "pwned"
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-action]"), "read-only"
        browser.get(f"{server.base}/")
        until(browser, lambda d: count(d, "pending") == 1, "the overview")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide at 375px"
        assert browser.find_element(By.ID, "read-only").is_displayed()
    finally:
        stop_http(server)
