"""Schedules and rules page: the site's time zone, schedules with hours and holidays, caller
rules in order (the first match wins), the CRM settings and the CRM-owner CSV import; every
validation error shown next to its field with nothing saved."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from firmware.routing.rules import CallerRule, match_caller
from firmware.store import Store, load_yaml
from tests.webui.conftest import ADMIN_PASSWORD, OFFICE_YAML, page, post, store_config, with_config

SCHEDULE_FORM = {
    "name": "office", "timezone": "", "hours_mon": "09:00-13:00, 14:00-18:00",
    "hours_tue": "9:00 – 18:00", "hours_wed": "", "hours_thu": "", "hours_fri": "22:00-06:00",
    "hours_sat": "", "hours_sun": "00:00-24:00", "holidays": "2026-12-31\n01.01.2027",
    "after_hours": "102",
}
RULE_FORM = {"match": "7495*", "action": "route", "reply": "busy", "to": "200", "hours": ""}
_FINGERPRINT_RE = re.compile(r'name="fingerprint" value="([0-9a-f]+)"')
MONDAY_NOON_UTC = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC).timestamp()  # 12:00 in Moscow


def crm_owners(app: Flask) -> dict[str, str]:
    store = Store.open(app.config["DB"])
    try:
        return store.crm_owners()
    finally:
        store.close()


def fingerprints(client: FlaskClient) -> list[str]:
    """The fingerprint of each rule on the page, in order (from its delete form)."""
    text = page(client, "/rules")
    found = re.findall(r'/rules/callers/(\d+)/delete"[^>]*>\s*<input[^>]*>'
                       r'<input type="hidden" name="fingerprint" value="([0-9a-f]+)"', text)
    return [value for _index, value in found]


def winner(rules: tuple[CallerRule, ...], caller: str) -> str | None:
    """The action of the rule that decides for `caller` on a Monday at noon, Moscow time."""
    rule = match_caller(rules, caller, MONDAY_NOON_UTC, "Europe/Moscow")
    return None if rule is None else rule.action


RULES_YAML = """\
rules:
  - {match: "79161234567", action: vip, to: "102"}
  - {match: "7916*", action: blacklist, reply: reject}
  - {match: "_7495XXXXXXX", action: route, to: "200", hours: ["19:00-09:00"], weekdays: [sat]}
"""


# --------------------------------------------------------------------------- the page


def test_page_shows_every_section(admin: FlaskClient) -> None:
    text = page(admin, "/rules")
    for section in ("site", "schedules", "rules", "crm"):
        assert f'<section id="{section}">' in text
    assert 'value="Europe/Moscow"' in text  # the site's time zone, default
    assert "No schedule yet" in text and "No caller rule yet" in text
    assert "Phones in the table: 0." in text
    # The per-number webhook lives on the numbers page; this page links to it.
    assert 'href="/numbers#numbers"' in text


def test_page_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    text = page(client, "/rules")
    assert "Расписания и правила" in text and "Правила для звонящих" in text


def test_an_agent_may_not_open_the_page(client: FlaskClient) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert client.get("/rules").status_code == 403
    assert client.get("/rules/callers/new").status_code == 403


# --------------------------------------------------------------------------- site


def test_change_the_site_time_zone(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/site", {"timezone": "Asia/Novosibirsk"}, form_page="/rules")
    assert response.status_code == 302 and response.headers["Location"] == "/rules#site"
    assert store_config(app).site.timezone == "Asia/Novosibirsk"
    assert "The site&#39;s time zone is now Asia/Novosibirsk." in page(admin, "/rules")


def test_an_unknown_time_zone_is_refused(admin: FlaskClient, app: Flask) -> None:
    for zone in ("Mars/Olympus", "europe/moscow", ""):
        response = post(admin, "/rules/site", {"timezone": zone}, form_page="/rules")
        assert response.status_code == 400
        assert (f'id="e-timezone">Unknown time zone &#34;{zone}&#34;: write an IANA name such '
                "as Europe/Moscow") in response.get_data(as_text=True)
    assert store_config(app).site.timezone == "Europe/Moscow"


# --------------------------------------------------------------------------- schedules


def test_add_a_schedule(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/schedules/new", SCHEDULE_FORM)
    assert response.status_code == 302 and response.headers["Location"] == "/rules#schedules"
    schedule = store_config(app).schedules[0]
    assert schedule.name == "office" and schedule.timezone == "Europe/Moscow"
    assert schedule.hours == {0: ((540, 780), (840, 1080)), 1: ((540, 1080),),
                              4: ((1320, 360),), 6: ((0, 1440),)}
    assert schedule.holidays == {dt.date(2026, 12, 31), dt.date(2027, 1, 1)}
    assert schedule.after_hours == "102"
    text = page(admin, "/rules")
    assert "Schedule office saved." in text
    assert "Mon: 09:00-13:00, 14:00-18:00" in text and "2026-12-31, 2027-01-01" in text


def test_a_schedule_with_its_own_zone_and_an_outside_after_hours_number(
    admin: FlaskClient, app: Flask,
) -> None:
    response = post(admin, "/rules/schedules/new", {
        **SCHEDULE_FORM, "name": "Офис / ночь", "timezone": "Asia/Vladivostok",
        "after_hours": "+74951112233"})
    assert response.status_code == 302
    schedule = store_config(app).schedules[0]
    assert (schedule.name, schedule.timezone, schedule.after_hours) == (
        "Офис / ночь", "Asia/Vladivostok", "+74951112233")
    text = page(admin, "/rules")
    assert "Asia/Vladivostok" in text
    edit = re.search(r'href="(/rules/schedules/[^"]+/edit)"', text)
    assert edit and 'value="Офис / ночь"' in page(admin, edit.group(1))


def test_a_broken_time_range_is_refused_and_nothing_saved(admin: FlaskClient,
                                                          app: Flask) -> None:
    cases = {
        "9-18": "Write each range as HH:MM-HH:MM, e.g. 09:00-18:00; wrong: &#34;9-18&#34;.",
        "25:00-18:00": "&#34;25:00-18:00&#34;: the start must be from 00:00 to 23:59.",
        "09:00-24:30": "&#34;09:00-24:30&#34;: the end must be from 00:00 to 24:00.",
        "09:00-09:00": "&#34;09:00-09:00&#34;: a range must not end where it starts",
    }
    for broken, message in cases.items():
        response = post(admin, "/rules/schedules/new",
                        {**SCHEDULE_FORM, "hours_wed": f"08:00-10:00, {broken}"})
        assert response.status_code == 400
        text = response.get_data(as_text=True)
        assert f'id="e-hours_wed">{message}' in text, broken
        assert f'value="08:00-10:00, {broken}"' in text  # kept for fixing
    assert store_config(app).schedules == ()


def test_every_schedule_field_is_checked(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/schedules/new", {
        **SCHEDULE_FORM, "name": "", "timezone": "Moscow", "holidays": "2026-02-30",
        "after_hours": "999"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    expected = {
        "name": "Give the schedule a name.",
        "timezone": "Unknown time zone &#34;Moscow&#34;",
        "holidays": "Write each date as YYYY-MM-DD, e.g. 2026-12-31; wrong: &#34;2026-02-30&#34;.",
        "after_hours": "Unknown destination &#34;999&#34;: not an extension or a department. "
                       "Write an outside number in full (more than 8 digits) or with +.",
    }
    for field, message in expected.items():
        assert f'id="e-{field}">{message}' in text, field
    response = post(admin, "/rules/schedules/new",
                    {**SCHEDULE_FORM, "holidays": "2026-12-31, 31.12.2026"})
    assert 'id="e-holidays">The date 2026-12-31 is listed twice.' in \
        response.get_data(as_text=True)
    assert store_config(app).schedules == ()


def test_a_schedule_name_is_unique(admin: FlaskClient) -> None:
    post(admin, "/rules/schedules/new", SCHEDULE_FORM)
    response = post(admin, "/rules/schedules/new", SCHEDULE_FORM)
    assert response.status_code == 400
    assert 'id="e-name">Another schedule already has this name.' in \
        response.get_data(as_text=True)


def test_renaming_a_schedule_keeps_its_departments_and_numbers(admin: FlaskClient,
                                                                app: Flask) -> None:
    office = OFFICE_YAML.replace(
        'members: ["101", "102"]}', 'members: ["101", "102"], schedule: office}').replace(
        'destination: "200"}', 'destination: "200", schedule: office}')
    store = Store.open(app.config["DB"])
    try:
        store.replace_config(load_yaml(
            office + 'schedules:\n  - {name: office, hours: {mon: ["09:00-18:00"]}}\n'))
    finally:
        store.close()
    form = page(admin, "/rules/schedules/office/edit")
    assert 'value="09:00-18:00"' in form
    response = post(admin, "/rules/schedules/office/edit", {**SCHEDULE_FORM, "name": "main"})
    assert response.status_code == 302
    config = store_config(app)
    assert [s.name for s in config.schedules] == ["main"]
    assert config.departments[0].schedule == "main" and config.numbers[0].schedule == "main"
    # In use, it cannot be deleted.
    response = post(admin, "/rules/schedules/main/delete", form_page="/rules")
    assert response.status_code == 400
    assert ('id="e-form">Schedule main is used by department 200, number 74951234567: choose '
            "another schedule there first.") in response.get_data(as_text=True)
    assert len(store_config(app).schedules) == 1


def test_delete_a_schedule(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/rules/schedules/new", SCHEDULE_FORM)
    response = post(admin, "/rules/schedules/office/delete", form_page="/rules")
    assert response.status_code == 302
    assert store_config(app).schedules == ()
    assert admin.get("/rules/schedules/office/edit").status_code == 404


# --------------------------------------------------------------------------- caller rules


def test_add_rules_of_every_action(admin: FlaskClient, app: Flask) -> None:
    forms: list[dict[str, Any]] = [
        {**RULE_FORM, "match": "+7 (999) 000-00-00", "action": "blacklist", "reply": "reject",
         "to": "ignored for blacklist"},
        {**RULE_FORM, "match": "79161234567", "action": "vip", "to": ""},
        {**RULE_FORM, "match": "_7495XXXXXXX", "action": "vip", "to": "102"},
        {**RULE_FORM, "match": "8812*", "action": "route", "to": "88005553535",
         "hours": "19:00-09:00", "weekdays": ["sat", "sun"]},
    ]
    for form in forms:
        response = post(admin, "/rules/callers/new", form)
        assert response.status_code == 302, response.get_data(as_text=True)
        assert response.headers["Location"] == "/rules#rules"
    rules = store_config(app).rules
    assert [(r.match, r.action, r.reply, r.to) for r in rules] == [
        ("+7 (999) 000-00-00", "blacklist", "reject", None),
        ("79161234567", "vip", "busy", None),
        ("_7495XXXXXXX", "vip", "busy", "102"),
        ("8812*", "route", "busy", "88005553535"),
    ]
    assert rules[3].hours == ((1140, 540),) and rules[3].weekdays == {5, 6}
    text = page(admin, "/rules")
    assert "Caller rule for 8812* saved." in text
    assert "19:00-09:00; Sat, Sun" in text and "to 102 — Иван" in text


def test_a_route_rule_may_send_callers_to_a_mailbox(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/callers/new",
                    {**RULE_FORM, "match": "7812*", "to": "voicemail:200"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert [(r.match, r.action, r.to) for r in store_config(app).rules] == [
        ("7812*", "route", "voicemail:200")]


def test_rule_errors_are_shown_next_to_the_fields_and_nothing_saved(
    admin: FlaskClient, app: Flask,
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"match": "abc"}, "match", "Write a number (79990000000), a prefix ending in * "
                                    "(7495*) or a pattern starting with _"),
        ({"match": "74a5*"}, "match", "A prefix is 1 to 15 digits followed by *"),
        ({"match": "_7.9"}, "match", "A pattern is _ followed by digits"),
        ({"action": "forward"}, "action", "Choose an action from the list."),
        ({"action": "route", "to": ""}, "to", "A route rule needs a destination."),
        ({"action": "route", "to": "999"}, "to", "Unknown destination &#34;999&#34;: not an "
                                                 "extension or a department."),
        ({"action": "vip", "to": "88005553535"}, "to",
         "Unknown destination &#34;88005553535&#34;: choose an extension or a department."),
        ({"action": "blacklist", "reply": "hang up"}, "reply", "Choose busy or decline."),
        ({"hours": "19:00-9"}, "hours", "Write each range as HH:MM-HH:MM"),
        ({"weekdays": ["fri", "someday"]}, "weekdays", "Choose the days from the list."),
    ]
    for change, field, message in cases:
        response = post(admin, "/rules/callers/new", {**RULE_FORM, **change})
        assert response.status_code == 400, change
        assert f'id="e-{field}">{message}' in response.get_data(as_text=True), change
    assert store_config(app).rules == ()


def test_edit_a_rule(admin: FlaskClient, app: Flask) -> None:
    with_config(app, RULES_YAML)
    form = page(admin, "/rules/callers/2/edit")
    assert 'value="_7495XXXXXXX"' in form and 'value="19:00-09:00"' in form
    assert 'name="weekdays" value="sat" checked' in form
    token = _FINGERPRINT_RE.search(form)
    assert token
    response = post(admin, "/rules/callers/2/edit", {
        **RULE_FORM, "match": "_7495XXXXXXX", "fingerprint": token.group(1)})
    assert response.status_code == 302
    rule = store_config(app).rules[2]
    assert (rule.match, rule.action, rule.to, rule.hours, rule.weekdays) == (
        "_7495XXXXXXX", "route", "200", None, None)
    assert admin.get("/rules/callers/3/edit").status_code == 404


def test_reorder_rules_changes_which_one_wins(admin: FlaskClient, app: Flask) -> None:
    with_config(app, RULES_YAML)
    caller = "79161234567"
    assert winner(store_config(app).rules, caller) == "vip"
    first, second, _third = fingerprints(admin)
    response = post(admin, "/rules/callers/1/move", {"direction": "up", "fingerprint": second},
                    form_page="/rules")
    assert response.status_code == 302 and response.headers["Location"] == "/rules#rules"
    rules = store_config(app).rules
    assert [r.match for r in rules] == ["7916*", "79161234567", "_7495XXXXXXX"]
    # The blacklist prefix now comes first, so it decides for the VIP's number too.
    assert winner(rules, caller) == "blacklist"
    _first, moved, _third = fingerprints(admin)
    assert moved == first
    post(admin, "/rules/callers/1/move", {"direction": "down", "fingerprint": moved},
         form_page="/rules")
    assert [r.match for r in store_config(app).rules] == [
        "7916*", "_7495XXXXXXX", "79161234567"]


def test_a_form_made_before_the_rules_changed_saves_nothing(admin: FlaskClient,
                                                            app: Flask) -> None:
    with_config(app, RULES_YAML)
    first, _second, _third = fingerprints(admin)
    # Someone else deletes the first rule: the form's rule 0 is now another rule.
    post(admin, "/rules/callers/0/delete", {"fingerprint": first}, form_page="/rules")
    before = store_config(app).rules
    for path, data in (("/rules/callers/0/delete", {"fingerprint": first}),
                       ("/rules/callers/0/move", {"fingerprint": first, "direction": "down"}),
                       ("/rules/callers/0/edit", {**RULE_FORM, "fingerprint": first})):
        response = post(admin, path, data, form_page="/rules")
        assert response.status_code == 409, path
        assert 'id="e-form">The caller rules were changed elsewhere meanwhile' in \
            response.get_data(as_text=True)
    assert store_config(app).rules == before and len(before) == 2


def test_delete_a_rule(admin: FlaskClient, app: Flask) -> None:
    with_config(app, RULES_YAML)
    _first, second, _third = fingerprints(admin)
    response = post(admin, "/rules/callers/1/delete", {"fingerprint": second},
                    form_page="/rules")
    assert response.status_code == 302
    assert [r.match for r in store_config(app).rules] == ["79161234567", "_7495XXXXXXX"]
    assert "Caller rule for 7916* deleted." in page(admin, "/rules")


# --------------------------------------------------------------------------- CRM


def test_crm_settings(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/crm", {"url": "https://crm.example.ru/owner",
                                          "timeout_s": "3"}, form_page="/rules")
    assert response.status_code == 302 and response.headers["Location"] == "/rules#crm"
    crm = store_config(app).crm
    assert (crm.url, crm.timeout_s) == ("https://crm.example.ru/owner", 3.0)
    assert 'value="https://crm.example.ru/owner"' in page(admin, "/rules")
    post(admin, "/rules/crm", {"url": "", "timeout_s": ""}, form_page="/rules")
    crm = store_config(app).crm
    assert (crm.url, crm.timeout_s) == (None, 2.0)


def test_crm_settings_are_checked(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/rules/crm", {"url": "crm.example.ru", "timeout_s": "11"},
                    form_page="/rules")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert 'id="e-url">Enter an address starting with http:// or https://' in text
    assert 'id="e-timeout_s">Enter a number of seconds above 0 and up to 10' in text
    assert 'value="crm.example.ru"' in text
    assert store_config(app).crm.url is None


def upload(client: FlaskClient, content: bytes, name: str = "owners.csv") -> TestResponse:
    response: TestResponse = post(client, "/rules/crm/owners",
                                  {"file": (io.BytesIO(content), name)},
                                  form_page="/rules", content_type="multipart/form-data")
    return response


def test_import_crm_owners(admin: FlaskClient, app: Flask) -> None:
    response = upload(admin, b"phone,extension\n+7 (916) 123-45-67,101\n84951234567,102\n")
    assert response.status_code == 302
    assert crm_owners(app) == {"79161234567": "101", "74951234567": "102"}
    text = page(admin, "/rules")
    assert "Imported 2 responsible managers." in text and "Phones in the table: 2." in text
    # A spreadsheet saved on Russian Windows: cp1251 and ";" between the columns.
    upload(admin, "телефон;сотрудник\r\n79990000000;103\r\n".encode("cp1251"))
    assert crm_owners(app) == {"79990000000": "103"}


def test_a_wrong_crm_line_is_named_and_nothing_is_replaced(admin: FlaskClient,
                                                           app: Flask) -> None:
    upload(admin, b"79161234567,101\n")
    cases = {
        b"phone,extension\n79161234567,101\n79161234568,999\n":
            "Line 3: unknown extension &#34;999&#34;. Nothing was changed.",
        b"79161234567,101\nanonymous,102\n":
            "Line 2: &#34;anonymous&#34; is not a phone number. Nothing was changed.",
        b"79161234567\n": "Line 1: expected phone,extension. Nothing was changed.",
        b"phone,extension\n": "The file has no phone,extension rows. Nothing was changed.",
    }
    for content, message in cases.items():
        response = upload(admin, content)
        assert response.status_code == 400
        assert f'id="e-file">{message}' in response.get_data(as_text=True)
        assert crm_owners(app) == {"79161234567": "101"}
    response = post(admin, "/rules/crm/owners", {}, form_page="/rules")
    assert 'id="e-file">Choose a CSV file.' in response.get_data(as_text=True)


def test_empty_the_crm_owner_table(admin: FlaskClient, app: Flask) -> None:
    upload(admin, b"79161234567,101\n")
    assert "Empty the table" in page(admin, "/rules")
    response = post(admin, "/rules/crm/owners/clear", form_page="/rules")
    assert response.status_code == 302
    assert crm_owners(app) == {}
