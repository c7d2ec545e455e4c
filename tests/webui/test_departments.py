"""The departments page: the list, adding and editing a department with every key of
docs/config.md (strategy knobs, members edited in place, queue and callback, no-answer action
and scheme), a message next to each wrong field, and deleting one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import ConfigError
from tests.webui.conftest import Form, form_fields, form_of, post, put_config, store_config
from webui import configedit


def new_department(**fields: Any) -> Form:
    """A new department's form as first shown, with `fields` changed."""
    form: Form = {
        "number": "300", "name": "Продажи", "strategy": "in_order", "ring_timeout_s": "20",
        "schedule": "", "step_delay_s": "5", "tier_time_s": "15", "tier_mode": "add",
        "rank": "manual", "sticky": "none", "sticky_ring_s": "10", "wrap_up_s": "0",
        "auto_break_after": "0", "max_callers": "10", "max_wait_s": "300", "retry_s": "5",
        "announce_s": "30", "callback_key": "1", "callback_expire_s": "300",
        "callback_customer_ring_s": "25", "callback_attempts": "3", "callback_retry_s": "120",
        "callback_apology": "on",
        "no_answer": "none",
        "no_answer_to": "", "no_answer_number": "", "no_answer_time_s": "30", "reserve": "",
        "s-0-to": "", "s-0-time_s": "",
    }
    form.update(fields)
    return form


def members(*rows: dict[str, str]) -> Form:
    """Member rows as the form names them: m-<index>-<field>."""
    form: Form = {}
    for index, row in enumerate(rows):
        full = {"position": str(index + 1), "ring_time_s": "", "rank": "", "tier": "",
                "weight": "", "skills": "", **row}
        form.update({f"m-{index}-{key}": value for key, value in full.items()})
    return form


def department(app: Flask, number: str) -> Any:
    return next(d for d in store_config(app).departments if d.number == number)


def member_list(app: Flask, number: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    return [(m.extension, m.ring_time_s, m.extra) for m in department(app, number).members]


# --------------------------------------------------------------------------- the list


def test_the_list_shows_each_department_with_its_strategy_in_plain_words(
    admin: FlaskClient,
) -> None:
    page = admin.get("/departments").get_data(as_text=True)

    row = re.search(r'<tr id="department-200">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert [c.strip() for c in cells[:4]] == ["200", "Отдел продаж", "All at once", "2"]
    assert 'href="/departments/new"' in page


def test_the_list_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})

    page = client.get("/departments").get_data(as_text=True)

    assert "Все сразу" in page and "Добавить отдел" in page


def test_the_list_says_so_when_there_are_no_departments(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda d: d.update(departments=[], numbers=[]))

    assert "No departments yet." in admin.get("/departments").get_data(as_text=True)


def test_the_form_lists_every_strategy_with_its_plain_explanation(admin: FlaskClient) -> None:
    page = admin.get("/departments/new").get_data(as_text=True).replace("&#39;", "'")

    options = re.findall(r'<option value="([a-z_]+)" (?:selected)? ?data-explanation="[^"]+">'
                         r"([^<]+ — [^<]+)</option>", page)
    assert len(options) == 12
    assert ("in_order", "In order — Phones ring one after another in the list's order, each "
            "for its own ring time.") in options
    assert page.count('name="strategy"') == 1
    # The chosen one's explanation is also written out under the list.
    assert ('<small id="strategy-explanation">Every free phone rings together; the first to '
            "answer takes the call.</small>") in page


def test_a_new_department_suggests_a_free_number(admin: FlaskClient) -> None:
    page = admin.get("/departments/new").get_data(as_text=True)

    assert 'name="number" type="text" value="300"' in page


def test_an_unknown_department_is_not_found(admin: FlaskClient) -> None:
    assert admin.get("/departments/999").status_code == 404
    assert post(admin, "/departments/999/delete", form_page="/departments").status_code == 404


def test_an_agent_may_not_open_the_departments(client: FlaskClient) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})

    assert client.get("/departments").status_code == 403
    assert client.get("/departments/200").status_code == 403


# --------------------------------------------------------------------------- adding


def test_a_department_with_three_employees_rings_in_order(admin: FlaskClient,
                                                          app: Flask) -> None:
    form = new_department() | members({"extension": "103"}, {"extension": "101"},
                                      {"extension": "102"})

    response = post(admin, "/departments/new", form)

    assert response.status_code == 302 and response.headers["Location"] == "/departments"
    saved = department(app, "300")
    assert (saved.name, saved.strategy, saved.ring_timeout_s) == ("Продажи", "in_order", 20)
    assert [m.extension for m in saved.members] == ["103", "101", "102"]
    assert saved.extra == {}  # defaults are not written out
    assert "Department 300 Продажи saved." in admin.get("/departments").get_data(as_text=True)


def test_ticked_employees_are_added_when_saving(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/departments/new", new_department(add=["102", "101", "103"]))

    assert response.status_code == 302
    assert [m.extension for m in department(app, "300").members] == ["102", "101", "103"]


def test_add_redraws_the_form_with_the_new_rows_without_saving(admin: FlaskClient,
                                                               app: Flask) -> None:
    response = post(admin, "/departments/new",
                    new_department(action="add", add=["101", "103"]))

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="m-0-extension" value="101"' in page
    assert 'name="m-1-extension" value="103"' in page
    assert 'name="add" value="102"' in page and 'name="add" value="101"' not in page
    assert [d.number for d in store_config(app).departments] == ["200"]


def test_a_department_with_every_setting_is_stored_as_written(admin: FlaskClient,
                                                              app: Flask) -> None:
    form = new_department(
        strategy="tiers", ring_timeout_s="45", step_delay_s="7", tier_time_s="12",
        tier_mode="replace", rank="auto", sticky="last_agent", sticky_ring_s="8",
        wrap_up_s="30", auto_break_after="3", queue="on", max_callers="5", max_wait_s="120",
        retry_s="10", callback="on", callback_key="#", callback_expire_s="600",
        callback_customer_ring_s="20", callback_attempts="2", callback_retry_s="60",
        no_answer="steps", **{"s-0-to": "102", "s-0-time_s": "20",
                              "s-1-to": "+7 916 123-45-67", "s-1-time_s": "15",
                              "s-2-to": "", "s-2-time_s": ""},
        reserve="79160000000",
    ) | members(
        {"extension": "101", "ring_time_s": "15", "rank": "1", "tier": "1", "weight": "62.5",
         "skills": "lang:en, lang:de"},
        {"extension": "102", "tier": "2", "weight": "37.5"},
    )

    assert post(admin, "/departments/new", form).status_code == 302

    saved = department(app, "300")
    assert saved.strategy == "tiers" and saved.ring_timeout_s == 45
    assert saved.extra == {
        "step_delay_s": 7, "tier_time_s": 12, "tier_mode": "replace", "rank": "auto",
        "sticky": "last_agent", "sticky_ring_s": 8, "wrap_up_s": 30, "auto_break_after": 3,
        "queue": {"max_callers": 5, "max_wait_s": 120, "retry_s": 10,
                  "callback": {"key": "#", "expire_s": 600, "customer_ring_s": 20,
                               "attempts": 2, "retry_s": 60}},
        "no_answer": {"steps": [{"to": "102", "time_s": 20},
                                {"to": "+79161234567", "time_s": 15}],
                      "reserve": "79160000000"},
    }
    assert member_list(app, "300") == [
        ("101", 15, {"rank": 1, "tier": 1, "weight": 62.5, "skills": ["lang:en", "lang:de"]}),
        ("102", None, {"tier": 2, "weight": 37.5}),
    ]


def test_no_answer_transfer_and_forward_are_one_step(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(
        no_answer="transfer", no_answer_to="200", no_answer_time_s="25"))
    post(admin, "/departments/new", new_department(
        number="400", no_answer="forward", no_answer_number="+79161234567"))

    assert department(app, "300").extra == {
        "no_answer": {"action": "transfer", "to": "200", "time_s": 25}}
    assert department(app, "400").extra == {
        "no_answer": {"action": "forward", "to": "+79161234567", "time_s": 30}}


def test_ring_times_left_empty_take_the_default(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(
        no_answer="transfer", no_answer_to="101", no_answer_time_s=""))
    post(admin, "/departments/new", new_department(
        number="400", no_answer="steps", **{"s-0-to": "", "s-0-time_s": "",
                                            "s-1-to": "300", "s-1-time_s": ""}))

    assert department(app, "300").extra == {"no_answer": {"action": "transfer", "to": "101"}}
    assert department(app, "400").extra == {"no_answer": {"steps": [{"to": "300"}]}}


def test_a_schedule_can_be_chosen(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda d: d.update(schedules=[{"name": "office", "hours": {
        "mon": ["09:00-18:00"]}}]))

    assert "schedule office" in admin.get("/departments/new").get_data(as_text=True)
    assert post(admin, "/departments/new", new_department(schedule="office")).status_code == 302
    assert department(app, "300").schedule == "office"


# --------------------------------------------------------------------------- validation

BAD_FIELDS = [
    ({"number": "1"}, "number", "Two to six digits, e.g. 200."),
    ({"number": "1234567"}, "number", "Two to six digits, e.g. 200."),
    ({"number": "20a"}, "number", "Two to six digits, e.g. 200."),
    ({"number": "200"}, "number", "Department 200 already exists."),
    ({"number": "101"}, "number", "101 is already an employee&#39;s extension."),
    ({"name": "  "}, "name", "Give the department a name."),
    ({"strategy": "fastest"}, "strategy", "Choose a strategy from the list."),
    ({"ring_timeout_s": "4"}, "ring_timeout_s", "Enter a whole number from 5 to 600."),
    ({"ring_timeout_s": "601"}, "ring_timeout_s", "Enter a whole number from 5 to 600."),
    ({"ring_timeout_s": ""}, "ring_timeout_s", "Enter a whole number from 5 to 600."),
    ({"schedule": "night"}, "schedule", "Choose a schedule from the list."),
    ({"step_delay_s": "0"}, "step_delay_s", "Enter a whole number from 1 to 600."),
    ({"tier_time_s": "601"}, "tier_time_s", "Enter a whole number from 1 to 600."),
    ({"tier_mode": "both"}, "tier_mode", "Choose a value from the list."),
    ({"rank": "best"}, "rank", "Choose a value from the list."),
    ({"sticky": "always"}, "sticky", "Choose a value from the list."),
    ({"sticky_ring_s": "0"}, "sticky_ring_s", "Enter a whole number from 1 to 600."),
    ({"wrap_up_s": "3601"}, "wrap_up_s", "Enter a whole number from 0 to 3600."),
    ({"wrap_up_s": "-1"}, "wrap_up_s", "Enter a whole number from 0 to 3600."),
    ({"auto_break_after": "101"}, "auto_break_after", "Enter a whole number from 0 to 100."),
    ({"queue": "on", "max_callers": "0"}, "max_callers", "Enter a whole number from 1 to 100."),
    ({"queue": "on", "max_wait_s": "9"}, "max_wait_s", "Enter a whole number from 10 to 3600."),
    ({"queue": "on", "retry_s": "61"}, "retry_s", "Enter a whole number from 1 to 60."),
    ({"queue": "on", "callback": "on", "callback_key": "A"}, "callback_key",
     "One phone key: a digit, * or #."),
    ({"queue": "on", "callback": "on", "callback_expire_s": "59"}, "callback_expire_s",
     "Enter a whole number from 60 to 86400."),
    ({"queue": "on", "callback": "on", "callback_customer_ring_s": "26"},
     "callback_customer_ring_s", "Enter a whole number from 5 to 25."),
    ({"queue": "on", "callback": "on", "callback_attempts": "11"}, "callback_attempts",
     "Enter a whole number from 1 to 10."),
    ({"queue": "on", "callback": "on", "callback_retry_s": "9"}, "callback_retry_s",
     "Enter a whole number from 10 to 3600."),
    ({"no_answer": "hang_up"}, "no_answer", "Choose what happens from the list."),
    ({"no_answer": "transfer", "no_answer_to": "999"}, "no_answer_to",
     "Choose a department or an employee from the list."),
    ({"no_answer": "transfer", "no_answer_to": "300"}, "no_answer_to",
     "Choose a department or an employee from the list."),
    ({"no_answer": "transfer", "no_answer_to": "101", "no_answer_time_s": "4"},
     "no_answer_time_s", "Enter a whole number from 5 to 600."),
    ({"no_answer": "forward", "no_answer_number": "12"}, "no_answer_number",
     "Digits with an optional + at the start, 3 to 15 digits, e.g. +79161234567."),
    ({"no_answer": "forward", "no_answer_number": "8916abc"}, "no_answer_number",
     "Digits with an optional + at the start, 3 to 15 digits, e.g. +79161234567."),
    ({"no_answer": "steps"}, "steps", "Add at least one step: where to and for how long."),
    ({"no_answer": "steps", "s-0-to": "555", "s-0-time_s": "20"}, "s-0-to",
     "&#34;555&#34; is not an extension or a department. Write an outside number in full, "
     "e.g. 79161234567, or with +."),
    ({"no_answer": "steps", "s-0-to": "101", "s-0-time_s": "601"}, "s-0-time_s",
     "Enter a whole number from 5 to 600."),
    ({"no_answer": "steps", "s-0-to": "", "s-0-time_s": "20"}, "s-0-to",
     "Enter where to, or clear the row."),
    ({"reserve": "x1"}, "reserve", "&#34;x1&#34; is not an extension or a department."),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS,
                         ids=[f"{case[1]}={next(iter(case[0].values()))}" for case in BAD_FIELDS])
def test_a_wrong_field_is_refused_with_a_message_next_to_it(
    admin: FlaskClient, app: Flask, fields: Form, field: str, message: str,
) -> None:
    before = store_config(app)

    response = post(admin, "/departments/new", new_department(**fields))

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    shown = re.search(rf'<p class="error" id="e-{re.escape(field)}">([^<]*)</p>', page)
    assert shown is not None, page
    assert message in shown.group(1)
    assert "Not saved: check the fields marked in red." in page
    assert store_config(app) == before


BAD_MEMBERS = [
    ({"extension": "109"}, "extension", "There is no employee 109."),
    ({"position": "0"}, "position", "Enter a whole number from 1 to 1000."),
    ({"position": "x"}, "position", "Enter a whole number from 1 to 1000."),
    ({"ring_time_s": "4"}, "ring_time_s", "Enter a whole number from 5 to 600."),
    ({"rank": "0"}, "rank", "Enter a whole number from 1 to 1000."),
    ({"tier": "10"}, "tier", "Enter a whole number from 1 to 9."),
    ({"weight": "101"}, "weight", "Enter a percentage from 0 to 100, e.g. 30 or 12.5."),
    ({"weight": "a lot"}, "weight", "Enter a percentage from 0 to 100, e.g. 30 or 12.5."),
    ({"skills": "english"}, "skills",
     "Write each skill as key:value without spaces, e.g. lang:en. Not like that: "
     "&#34;english&#34;"),
    ({"skills": "lang:en, lang:en"}, "skills", "The skill &#34;lang:en&#34; is listed twice."),
]


@pytest.mark.parametrize(("row", "field", "message"), BAD_MEMBERS,
                         ids=[case[1] for case in BAD_MEMBERS])
def test_a_wrong_member_value_is_refused_in_its_row(
    admin: FlaskClient, app: Flask, row: dict[str, str], field: str, message: str,
) -> None:
    before = store_config(app)
    form = new_department() | members({"extension": "102"}, {"extension": "101", **row})

    response = post(admin, "/departments/new", form)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'<p class="error" id="e-m-1-{field}">{message}</p>' in page
    assert store_config(app) == before


def test_an_employee_listed_twice_is_refused(admin: FlaskClient) -> None:
    form = new_department() | members({"extension": "101"}, {"extension": "101"})

    page = post(admin, "/departments/new", form).get_data(as_text=True)

    assert '<p class="error" id="e-m-1-extension">Employee 101 is listed twice.</p>' in page


def test_the_form_keeps_what_was_typed_after_an_error(admin: FlaskClient) -> None:
    form = new_department(name="", ring_timeout_s="33") | members(
        {"extension": "101", "weight": "40"})

    page = post(admin, "/departments/new", form).get_data(as_text=True)

    assert 'name="ring_timeout_s" type="text" value="33"' in page
    assert 'name="m-0-weight" value="40"' in page


def test_errors_are_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})

    page = post(client, "/departments/new", new_department(name="", wrap_up_s="9999"),
                form_page="/departments/new").get_data(as_text=True)

    assert "Укажите название отдела." in page
    assert "Введите целое число от 0 до 3600." in page


def test_a_refusal_of_the_whole_configuration_is_shown_at_the_top(
    admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(draft: configedit.Draft) -> None:
        raise ConfigError("departments[1].queue", "something the form did not check")

    monkeypatch.setattr(configedit, "save", refuse)

    response = post(admin, "/departments/new", new_department())

    assert response.status_code == 400
    assert ('<p class="error form-error" id="e-form">Not saved: departments[1].queue: '
            "something the form did not check</p>") in response.get_data(as_text=True)


def test_a_change_saved_meanwhile_by_someone_else_is_not_overwritten(
    admin: FlaskClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def conflict(draft: configedit.Draft) -> None:
        raise configedit.RevisionConflictError("configuration is at revision 3, expected 2")

    monkeypatch.setattr(configedit, "save", conflict)

    page = post(admin, "/departments/new", new_department()).get_data(as_text=True)

    assert "someone else changed the settings at the same time" in page


# --------------------------------------------------------------------------- editing


def test_saving_an_unchanged_form_changes_nothing(admin: FlaskClient, app: Flask) -> None:
    def rich(data: dict[str, Any]) -> None:
        data["departments"][0].update(
            strategy="weighted", step_delay_s=5, wrap_up_s=15, sticky="crm_owner",
            queue={"max_callers": 3, "max_wait_s": 90, "retry_s": 4,
                   "callback": {"key": "*", "expire_s": 900, "customer_ring_s": 25,
                                "attempts": 4, "retry_s": 300}},
            no_answer={"steps": [{"to": "103", "time_s": 10}, {"to": "79161234567",
                                                               "time_s": 30}],
                       "reserve": "+74950000000"},
            members=[{"extension": "101", "weight": 70, "skills": ["lang:en"]},
                     {"extension": "102", "weight": 30, "ring_time_s": 12}])

    put_config(app, rich)
    before = store_config(app)
    form = form_of(admin, "/departments/200", "department-form")

    response = post(admin, "/departments/200", form | {"action": "save"})

    assert response.status_code == 302, response.get_data(as_text=True)
    assert store_config(app) == before


@pytest.mark.parametrize("stored", [
    {"queue": {"max_callers": 3, "callback": True}},
    {"queue": {"max_wait_s": 300, "callback": {"key": "1", "attempts": 5}}},
    {"queue": {}, "no_answer": {"action": "transfer", "to": "103"}},
    {"no_answer": {"reserve": "79160000000"}},
    {"wrap_up_s": 0, "sticky": "none"},
], ids=["callback-true", "callback-keys", "empty-queue", "reserve-only", "defaults-written"])
def test_saving_unchanged_keeps_what_the_admin_wrote(admin: FlaskClient, app: Flask,
                                                     stored: Form) -> None:
    put_config(app, lambda d: d["departments"][0].update(stored))
    before = store_config(app)
    form = form_of(admin, "/departments/200", "department-form")

    assert post(admin, "/departments/200", form | {"action": "save"}).status_code == 302

    assert store_config(app) == before


def test_a_queue_and_callback_at_their_defaults_are_written_short(admin: FlaskClient,
                                                                 app: Flask) -> None:
    post(admin, "/departments/new", new_department(queue="on", callback="on"))

    assert department(app, "300").extra == {"queue": {"callback": True}}


def test_queue_announcements_every_n_seconds_or_plain_ringing(admin: FlaskClient,
                                                              app: Flask) -> None:
    post(admin, "/departments/new", new_department(queue="on", announce_s="0"))
    assert department(app, "300").extra == {"queue": {"announce_s": 0}}
    form = form_of(admin, "/departments/300", "department-form")
    assert form["announce_s"] == "0"
    response = post(admin, "/departments/300", form | {"announce_s": "5", "action": "save"})
    assert response.status_code == 400
    assert "0 (plain ringing), or 10 to 600." in response.get_data(as_text=True)
    assert department(app, "300").extra == {"queue": {"announce_s": 0}}


def test_the_edit_form_shows_the_stored_values(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda d: d["departments"][0].update(
        queue={"max_callers": 3, "callback": True},
        no_answer={"action": "forward", "to": "79161234567", "time_s": 40}))

    form = form_of(admin, "/departments/200", "department-form")

    assert form["name"] == "Отдел продаж" and form["strategy"] == "ring_all"
    assert (form["queue"], form["max_callers"], form["max_wait_s"]) == ("on", "3", "300")
    assert form["callback"] == "on" and form["callback_key"] == "1"
    assert (form["no_answer"], form["no_answer_number"], form["no_answer_time_s"]) == (
        "forward", "79161234567", "40")
    assert (form["m-0-extension"], form["m-1-extension"]) == ("101", "102")
    assert "number" not in form  # a department keeps its number


def test_members_are_reordered_by_their_position_numbers(admin: FlaskClient,
                                                         app: Flask) -> None:
    form = form_of(admin, "/departments/200", "department-form")
    form.update({"m-0-position": "2", "m-1-position": "1", "add": "103"})

    assert post(admin, "/departments/200", form | {"action": "save"}).status_code == 302

    assert [m.extension for m in department(app, "200").members] == ["102", "101", "103"]


def test_up_and_down_redraw_the_rows_in_the_new_order_without_saving(
    admin: FlaskClient, app: Flask,
) -> None:
    before = store_config(app)
    form = form_of(admin, "/departments/200", "department-form")

    page = post(admin, "/departments/200", form | {"action": "down-0"}).get_data(as_text=True)

    assert page.index('name="m-0-extension" value="102"') < page.index(
        'name="m-1-extension" value="101"')
    assert 'name="m-0-position" value="1"' in page
    up = post(admin, "/departments/200", form | {"action": "up-1"}).get_data(as_text=True)
    assert 'name="m-0-extension" value="102"' in up
    assert store_config(app) == before


def test_remove_takes_a_row_out_and_save_stores_it(admin: FlaskClient, app: Flask) -> None:
    form = form_of(admin, "/departments/200", "department-form")

    page = post(admin, "/departments/200", form | {"action": "remove-0"}).get_data(
        as_text=True)

    redrawn = form_fields(page, "department-form")
    assert redrawn["m-0-extension"] == "102" and "m-1-extension" not in redrawn
    assert 'name="add" value="101"' in page  # back among those who can be added
    assert [m.extension for m in department(app, "200").members] == ["101", "102"]
    assert post(admin, "/departments/200", redrawn | {"action": "save"}).status_code == 302
    assert [m.extension for m in department(app, "200").members] == ["102"]


def test_add_a_step_gives_another_row(admin: FlaskClient) -> None:
    form = form_of(admin, "/departments/200", "department-form")
    form.update({"no_answer": "steps", "s-0-to": "103", "s-0-time_s": "10"})

    page = post(admin, "/departments/200", form | {"action": "step"}).get_data(as_text=True)

    assert 'name="s-0-to" value="103"' in page
    assert 'name="s-1-to"' in page and 'name="s-2-to"' in page


def test_turning_the_queue_and_no_answer_off_removes_them(admin: FlaskClient,
                                                          app: Flask) -> None:
    put_config(app, lambda d: d["departments"][0].update(
        queue={"max_callers": 3}, no_answer={"action": "transfer", "to": "103"}))
    form = form_of(admin, "/departments/200", "department-form")
    form.pop("queue")
    form["no_answer"] = "none"

    assert post(admin, "/departments/200", form | {"action": "save"}).status_code == 302

    assert department(app, "200").extra == {}


def test_editing_changes_the_name_strategy_and_knobs(admin: FlaskClient, app: Flask) -> None:
    form = form_of(admin, "/departments/200", "department-form")
    form.update({"name": "Продажи", "strategy": "cascading", "step_delay_s": "3"})

    assert post(admin, "/departments/200", form | {"action": "save"}).status_code == 302

    saved = department(app, "200")
    assert (saved.name, saved.strategy, saved.extra) == ("Продажи", "cascading",
                                                         {"step_delay_s": 3})
    assert [d.destination for d in store_config(app).numbers] == ["200"]


# --------------------------------------------------------------------------- deleting


def test_a_department_nothing_points_at_is_deleted(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(add=["101"]))

    response = post(admin, "/departments/300/delete", form_page="/departments/300")

    assert response.headers["Location"] == "/departments"
    assert [d.number for d in store_config(app).departments] == ["200"]
    assert [e.number for e in store_config(app).extensions] == ["101", "102", "103"]
    assert "Department 300 Продажи deleted." in admin.get("/departments").get_data(
        as_text=True)


def test_deleting_a_department_a_number_points_at_is_refused_with_the_reason(
    admin: FlaskClient, app: Flask,
) -> None:
    put_config(app, lambda d: d.update(rules=[{"match": "7495*", "action": "route",
                                               "to": "200"}]))
    before = store_config(app)

    response = post(admin, "/departments/200/delete", form_page="/departments/200")

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Department 200 was not deleted: calls are still sent to it." in page
    assert "<li>Phone number 74951234567 sends its calls here.</li>" in page
    assert "<li>The caller rule for 7495* sends calls here.</li>" in page
    assert store_config(app) == before


def test_deleting_a_department_another_one_passes_calls_to_is_refused(
    admin: FlaskClient, app: Flask,
) -> None:
    post(admin, "/departments/new", new_department(number="400", name="Склад"))
    post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "400", "s-0-time_s": "20"}))

    page = post(admin, "/departments/400/delete", form_page="/departments/400").get_data(
        as_text=True)

    assert "<li>Department 300 Продажи sends its unanswered calls here.</li>" in page
    assert [d.number for d in store_config(app).departments] == ["200", "400", "300"]


def test_a_delete_without_the_csrf_token_is_refused(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department())

    assert admin.post("/departments/300/delete").status_code == 400
    assert [d.number for d in store_config(app).departments] == ["200", "300"]


def test_the_members_mobiles_are_a_step(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/departments/new", new_department(no_answer="steps", **{
        "s-0-to": "Mobiles", "s-0-time_s": "20", "s-1-to": "voicemail", "s-1-time_s": ""}))

    assert department(app, "300").extra == {"no_answer": {"steps": [
        {"to": "mobiles", "time_s": 20}, {"to": "voicemail"}]}}
    form = form_of(admin, "/departments/300", "department-form")
    assert (form["s-0-to"], form["s-1-to"]) == ("mobiles", "voicemail")
