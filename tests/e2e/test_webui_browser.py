"""The web UI in a real browser (headless Chromium driven by Playwright), against a real daemon
and real SIPp phones: the first-run wizard, a department with three employees ringing in order,
a call placed by the provider, the live monitor following it without a reload, and the report
listing it. Screenshots of every step go to tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.linebox import DAEMON_WAIT_S, REPO_ROOT, LineboxProcess, base_config, running_linebox
from tests.e2e.sipp import free_port
from tests.e2e.test_calls import provider_call, start_agent, wait_for_records

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "webui"
ADMIN_PASSWORD = "office-admin-2026"
EMPLOYEES = {"104": "Анна", "105": "Борис", "106": "Вера"}
DID = "74951234567"
ANSWER_DELAY_MS = 4000  # 104 rings this long before answering: time to see "ringing"
HOLD_MS = 5000  # then talks this long: time to see "talking"
UI_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[LineboxProcess]:
    """A fresh box with the provider trunk and the office number, and no admin password."""
    config = base_config(departments=[], numbers=[])
    config["extensions"] = []
    with running_linebox(tmp_path / "box", config, http_port=free_port(tcp=True)) as linebox:
        yield linebox


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def url(box: LineboxProcess, path: str = "/") -> str:
    return f"http://127.0.0.1:{box.http_port}{path}"


def open_ui(browser: Browser, box: LineboxProcess) -> Page:
    page = browser.new_page(locale="ru-RU")
    page.set_default_timeout(UI_TIMEOUT_MS)
    for _ in range(100):  # the web UI process starts beside the daemon
        try:
            page.goto(url(box))
            break
        except Exception:  # noqa: BLE001 - connection refused until waitress listens
            page.wait_for_timeout(100)
    return page


def run_wizard(page: Page, box: LineboxProcess) -> dict[str, str]:
    """First run: the setup code the box printed, admin password, provider, department 300
    "in order" with three employees. Returns each new employee's phone password, as the last
    page shows them (once)."""
    expect(page.locator("h1")).to_have_text("Первый запуск: шаг 1 из 3")
    shot(page, "01-first-run-password")
    page.fill("#f-code", box.setup_code())
    page.fill("#f-password", ADMIN_PASSWORD)
    page.fill("#f-confirm", ADMIN_PASSWORD)
    page.click("main button[type=submit]")

    expect(page.locator("h1")).to_have_text("Первый запуск: шаг 2 из 3")
    page.fill("#f-host", "127.0.0.2")
    page.fill("#f-port", "5060")
    page.fill("#f-username", "box")
    page.fill("#f-password", "provider-pw")
    page.uncheck("input[name=register]")
    page.fill("#f-trunk_channels", "10")
    page.fill("#f-number", "2")  # a mistake first: the message shows next to the field
    page.fill("#f-channels", "3")
    page.click("main button[type=submit]:not([name])")
    expect(page.locator("#e-number")).to_be_visible()
    shot(page, "02-provider-error")
    page.fill("#f-number", DID)
    page.fill("#f-password", "provider-pw")
    page.click("main button[type=submit]:not([name])")

    expect(page.locator("h1")).to_have_text("Первый запуск: шаг 3 из 3")
    page.fill("#f-number", "300")
    page.fill("#f-name", "Продажи")
    page.select_option("#f-strategy", "in_order")
    page.fill("#f-employees", "\n".join(f"{e} {n}" for e, n in EMPLOYEES.items()))
    shot(page, "03-department")
    page.click("main button[type=submit]:not([name])")

    expect(page.locator("h1")).to_have_text("Всё готово")
    shot(page, "04-passwords-shown-once")
    rows = page.locator("#new-passwords tr").all()[1:]
    passwords = {}
    for row in rows:
        cells = row.locator("td").all_inner_texts()
        passwords[cells[0]] = cells[2]
    assert set(passwords) == set(EMPLOYEES), passwords
    return passwords


def test_first_run_department_call_monitor_and_report(
    browser: Browser, box: LineboxProcess, tmp_path: Path
) -> None:
    page = open_ui(browser, box)
    passwords = run_wizard(page, box)
    config = box.wait_for(  # the daemon applies the new configuration revision by itself
        lambda: any(a["extension"] == "104" for a in box.status()["agents"]), DAEMON_WAIT_S,
        "the wizard's employees in the daemon",
    )
    assert config

    trace = tmp_path / "sipp"
    with ExitStack() as stack:
        agents = {
            extension: stack.enter_context(start_agent(
                box, extension, trace, password=passwords[extension],
                variables={"answer_delay_ms": ANSWER_DELAY_MS},
            ))
            for extension in EMPLOYEES
        }
        page.click("a[href='/monitor']")
        monitor_row = page.locator("[data-extension='104']")
        expect(monitor_row).to_be_visible()
        shot(page, "05-monitor-idle")
        # The provider sends from the address and port the wizard was given, as a real one
        # does (the box knows its provider by both).
        caller = provider_call(box, trace, service=DID, local_port=5060,
                               variables={"hold_ms": HOLD_MS}).start()
        # The monitor follows the call by itself: no reload from here on.
        expect(monitor_row).to_have_attribute("data-state", "ringing")
        shot(page, "06-monitor-ringing")
        expect(monitor_row).to_have_attribute("data-state", "talking",
                                              timeout=ANSWER_DELAY_MS + UI_TIMEOUT_MS)
        shot(page, "07-monitor-talking")
        result = caller.wait()
        assert result.ok, result.describe()
        first = agents["104"].wait()
        assert first.ok and first.counters.get("answered") == 1, first.describe()
    (record,) = wait_for_records(box, 1)
    assert record["answered_by"] == "104" and record["department"] == "300"

    page.click("a[href='/reports']")
    per_manager = page.locator("[data-report='managers']")
    expect(per_manager).to_contain_text("104")
    expect(page.locator("[data-report='daily']")).to_contain_text(re.compile(r"\b1\b"))
    shot(page, "08-report")
