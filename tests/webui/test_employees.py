"""The employees page: the list, adding an employee (the phone password generated and shown
once), editing name, mobile, skills and departments, a new password, deleting, and a message
next to each wrong field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from firmware.store import ConfigError
from tests.webui.conftest import Form, form_of, post, put_config, store_config
from webui import configedit

PASSWORD_RE = re.compile(r'<code id="sip-password">([^<]+)</code>')


def new_employee(**fields: Any) -> Form:
    return {"number": "104", "name": "Пётр", "mobile": "", "skills": "", **fields}


def employee(app: Flask, number: str) -> Any:
    return next(e for e in store_config(app).extensions if e.number == number)


def members_of(app: Flask, department: str) -> list[str]:
    found = next(d for d in store_config(app).departments if d.number == department)
    return [m.extension for m in found.members]


def shown_password(response: Any) -> str:
    match = PASSWORD_RE.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)
    return match.group(1)


# --------------------------------------------------------------------------- the list


def test_the_list_shows_every_employee_with_mobile_skills_and_departments(
    admin: FlaskClient, app: Flask,
) -> None:
    put_config(app, lambda d: d["extensions"][0].update(mobile="+79161234567",
                                                        skills=["lang:en", "product:crm"]))

    page = admin.get("/employees").get_data(as_text=True)

    row = re.search(r'<tr id="employee-101">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).split() for c in re.findall(r"<td>(.*?)</td>",
                                                                      row.group(1), re.S)]
    assert cells[:5] == [["101"], ["Мария"], ["+79161234567"], ["lang:en", "product:crm"],
                         ["200", "Отдел", "продаж"]]
    assert '<tr id="employee-103">' in page
    assert "pw-101-secret" not in page  # passwords are never listed


def test_the_list_is_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})

    page = client.get("/employees").get_data(as_text=True)

    assert "Добавить сотрудника" in page and "Мобильный" in page


def test_the_list_says_so_when_there_are_no_employees(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda d: d.update(extensions=[], departments=[], numbers=[]))

    assert "No employees yet." in admin.get("/employees").get_data(as_text=True)


def test_an_agent_may_not_open_the_employees(client: FlaskClient, app: Flask) -> None:
    post(client, "/login", {"user": "101", "password": "pw-101-secret"})

    assert client.get("/employees/101").status_code == 403
    response = post(client, "/employees/102/password", form_page="/me")
    assert response.status_code == 403
    assert employee(app, "102").password == "pw-102-secret"


def test_an_unknown_employee_is_not_found(admin: FlaskClient) -> None:
    assert admin.get("/employees/999").status_code == 404
    assert post(admin, "/employees/999/delete", form_page="/employees").status_code == 404


# --------------------------------------------------------------------------- adding


def test_the_new_form_suggests_the_next_free_extension(admin: FlaskClient) -> None:
    page = admin.get("/employees/new").get_data(as_text=True)

    assert 'name="number" type="text" value="104"' in page
    assert 'name="departments" value="200"' in page


def test_adding_an_employee_shows_the_generated_password_once(admin: FlaskClient,
                                                              app: Flask) -> None:
    response = post(admin, "/employees/new", new_employee(
        mobile="+7 (916) 123-45-67", skills="lang:en,  product:crm", departments="200"))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    password = shown_password(response)
    saved = employee(app, "104")
    assert (saved.name, saved.password, saved.mobile, saved.skills) == (
        "Пётр", password, "+79161234567", ("lang:en", "product:crm"))
    assert len(password) >= 12
    assert members_of(app, "200") == ["101", "102", "104"]
    # Shown once: neither the list nor the employee's page carries it.
    assert password not in admin.get("/employees").get_data(as_text=True)
    assert password not in admin.get("/employees/104").get_data(as_text=True)


def test_an_added_employee_can_log_in_with_the_shown_password(app: Flask,
                                                              admin: FlaskClient) -> None:
    password = shown_password(post(admin, "/employees/new", new_employee()))
    agent = app.test_client()

    response = post(agent, "/login", {"user": "104", "password": password})

    assert response.headers["Location"] == "/me"


def test_an_employee_may_have_no_mobile_skills_or_department(admin: FlaskClient,
                                                             app: Flask) -> None:
    assert post(admin, "/employees/new", new_employee()).status_code == 200

    saved = employee(app, "104")
    assert (saved.mobile, saved.skills) == (None, ())
    assert "104" not in members_of(app, "200")


BAD_FIELDS = [
    ({"number": "1"}, "number", "Two to six digits, e.g. 101."),
    ({"number": "1234567"}, "number", "Two to six digits, e.g. 101."),
    ({"number": "1o4"}, "number", "Two to six digits, e.g. 101."),
    ({"number": ""}, "number", "Two to six digits, e.g. 101."),
    ({"number": "102"}, "number", "Extension 102 already exists."),
    ({"number": "200"}, "number", "200 is already a department&#39;s number."),
    ({"name": " "}, "name", "Enter the employee&#39;s name."),
    ({"mobile": "12"}, "mobile",
     "Digits with an optional + at the start, 3 to 15 digits, e.g. +79161234567."),
    ({"mobile": "8-916-CALL-ME"}, "mobile",
     "Digits with an optional + at the start, 3 to 15 digits, e.g. +79161234567."),
    ({"mobile": "+1234567890123456"}, "mobile",
     "Digits with an optional + at the start, 3 to 15 digits, e.g. +79161234567."),
    ({"skills": "english"}, "skills",
     "Write each skill as key:value without spaces, e.g. lang:en. Not like that: "
     "&#34;english&#34;"),
    ({"skills": "lang:en, lang: de"}, "skills", "Not like that: &#34;lang: de&#34;"),
    ({"skills": "lang:en:us"}, "skills", "Not like that: &#34;lang:en:us&#34;"),
    ({"skills": "lang:en, lang:en"}, "skills",
     "The skill &#34;lang:en&#34; is listed twice."),
    ({"departments": ["200", "900"]}, "departments", "Choose departments from the list."),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS,
                         ids=[f"{case[1]}={case[0][case[1]]}" for case in BAD_FIELDS])
def test_a_wrong_field_is_refused_with_a_message_next_to_it(
    admin: FlaskClient, app: Flask, fields: Form, field: str, message: str,
) -> None:
    before = store_config(app)

    response = post(admin, "/employees/new", new_employee(**fields))

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    shown = re.search(rf'<p class="error" id="e-{field}">([^<]*)</p>', page)
    assert shown is not None, page
    assert message in shown.group(1)
    assert "sip-password" not in page
    assert store_config(app) == before


def test_the_form_keeps_what_was_typed_after_an_error(admin: FlaskClient) -> None:
    page = post(admin, "/employees/new", new_employee(
        name="", mobile="+79161234567", skills="lang:en", departments="200")).get_data(
        as_text=True)

    assert 'name="mobile" type="tel" value="+79161234567"' in page
    assert 'name="skills" type="text" value="lang:en"' in page
    assert 'name="departments" value="200" checked' in page


def test_errors_are_in_russian_by_default(client: FlaskClient) -> None:
    post(client, "/login", {"user": "admin", "password": "correct horse battery"})

    page = post(client, "/employees/new", new_employee(number="102", name=""),
                form_page="/employees/new").get_data(as_text=True)

    assert "Внутренний номер 102 уже есть." in page
    assert "Укажите имя сотрудника." in page


def test_a_refusal_of_the_whole_configuration_is_shown_at_the_top(
    admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(draft: configedit.Draft) -> None:
        raise ConfigError("extensions[3].password", "must be 8 to 128 characters, got 3")

    monkeypatch.setattr(configedit, "save", refuse)

    response = post(admin, "/employees/new", new_employee())

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert ('<p class="error form-error" id="e-form">Not saved: extensions[3].password: '
            "must be 8 to 128 characters, got 3</p>") in page
    assert "sip-password" not in page


# --------------------------------------------------------------------------- editing


def test_editing_changes_name_mobile_skills_and_departments(admin: FlaskClient,
                                                            app: Flask) -> None:
    post(admin, "/departments/new", {
        "number": "300", "name": "Склад", "strategy": "ring_all", "ring_timeout_s": "20",
        "step_delay_s": "5", "tier_time_s": "15", "tier_mode": "add", "rank": "manual",
        "sticky": "none", "sticky_ring_s": "10", "wrap_up_s": "0", "auto_break_after": "0",
        "no_answer": "none", "add": ["103", "102"]}, form_page="/departments/new")
    form = form_of(admin, "/employees/102", "employee-form")
    assert form == {"name": "Иван", "mobile": "", "skills": "", "outbound": "long_distance",
                    "external_calls_per_hour": "30", "departments": ["200", "300"]}

    response = post(admin, "/employees/102", {
        "name": "Иван Петров", "mobile": "89161234567", "skills": "lang:de",
        "departments": "300"})

    assert response.headers["Location"] == "/employees"
    saved = employee(app, "102")
    assert (saved.name, saved.mobile, saved.skills, saved.password) == (
        "Иван Петров", "89161234567", ("lang:de",), "pw-102-secret")
    assert members_of(app, "200") == ["101"]
    assert members_of(app, "300") == ["103", "102"]  # kept in place
    assert "Employee 102 Иван Петров saved." in admin.get("/employees").get_data(as_text=True)


def test_joining_a_department_puts_the_employee_last(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/employees/103", {"name": "Ольга", "departments": "200"})

    assert members_of(app, "200") == ["101", "102", "103"]


def test_leaving_a_department_keeps_the_other_members_settings(admin: FlaskClient,
                                                               app: Flask) -> None:
    put_config(app, lambda d: d["departments"][0].update(
        members=[{"extension": "101", "rank": 1}, {"extension": "102", "weight": 20}]))

    post(admin, "/employees/101", {"name": "Мария"})

    found = store_config(app).departments[0]
    assert [(m.extension, m.extra) for m in found.members] == [("102", {"weight": 20})]


def test_clearing_mobile_and_skills_removes_them(admin: FlaskClient, app: Flask) -> None:
    put_config(app, lambda d: d["extensions"][0].update(mobile="+79161234567",
                                                        skills=["lang:en"]))
    form = form_of(admin, "/employees/101", "employee-form")
    assert (form["mobile"], form["skills"]) == ("+79161234567", "lang:en")

    post(admin, "/employees/101", form | {"mobile": "", "skills": ""})

    saved = employee(app, "101")
    assert (saved.mobile, saved.skills) == (None, ())


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"name": ""}, "name", "Enter the employee&#39;s name."),
    ({"mobile": "phone"}, "mobile", "Digits with an optional + at the start"),
    ({"skills": "lang=en"}, "skills", "Write each skill as key:value"),
    ({"departments": "999"}, "departments", "Choose departments from the list."),
])
def test_a_wrong_edit_is_refused_and_nothing_changes(
    admin: FlaskClient, app: Flask, fields: Form, field: str, message: str,
) -> None:
    before = store_config(app)

    response = post(admin, "/employees/101", {"name": "Мария", "departments": "200",
                                              **fields})

    assert response.status_code == 400
    assert re.search(rf'<p class="error" id="e-{field}">[^<]*{re.escape(message)}',
                     response.get_data(as_text=True))
    assert store_config(app) == before


def test_the_extension_number_cannot_be_changed(admin: FlaskClient, app: Flask) -> None:
    post(admin, "/employees/101", {"number": "109", "name": "Мария", "departments": "200"})

    assert [e.number for e in store_config(app).extensions] == ["101", "102", "103"]


# --------------------------------------------------------------------------- password


def test_a_new_password_is_made_and_shown_once(admin: FlaskClient, app: Flask) -> None:
    response = post(admin, "/employees/101/password", form_page="/employees/101")

    assert response.status_code == 200
    password = shown_password(response)
    assert password != "pw-101-secret"
    assert employee(app, "101").password == password
    assert password not in admin.get("/employees/101").get_data(as_text=True)
    assert "New password for 101 Мария" in response.get_data(as_text=True)


def test_a_password_reset_without_the_csrf_token_is_refused(admin: FlaskClient,
                                                            app: Flask) -> None:
    assert admin.post("/employees/101/password").status_code == 400
    assert employee(app, "101").password == "pw-101-secret"


# --------------------------------------------------------------------------- deleting


def test_deleting_an_employee_takes_them_out_of_their_departments(admin: FlaskClient,
                                                                  app: Flask) -> None:
    response = post(admin, "/employees/102/delete", form_page="/employees/102")

    assert response.headers["Location"] == "/employees"
    assert [e.number for e in store_config(app).extensions] == ["101", "103"]
    assert members_of(app, "200") == ["101"]
    assert "Employee 102 Иван deleted." in admin.get("/employees").get_data(as_text=True)


def test_deleting_an_employee_calls_are_sent_to_is_refused_with_the_reasons(
    admin: FlaskClient, app: Flask,
) -> None:
    def route_to_103(data: dict[str, Any]) -> None:
        data["numbers"][0]["destination"] = "103"
        data["rules"] = [{"match": "79990000000", "action": "vip", "to": "103"}]
        data["schedules"] = [{"name": "office", "hours": {"mon": ["09:00-18:00"]},
                              "after_hours": "103"}]
        data["departments"][0]["no_answer"] = {"steps": [{"to": "103", "time_s": 20}]}

    put_config(app, route_to_103)
    before = store_config(app)

    response = post(admin, "/employees/103/delete", form_page="/employees/103")

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Employee 103 was not deleted: calls are still sent to this extension." in page
    reasons = re.findall(r"<li>([^<]+)</li>", page)
    assert reasons == [
        "Phone number 74951234567 sends its calls here.",
        "The caller rule for 79990000000 sends calls here.",
        "The schedule office sends calls here out of hours.",
        "Department 200 Отдел продаж sends its unanswered calls here.",
    ]
    assert store_config(app) == before


def test_a_delete_the_configuration_refuses_is_shown_and_changes_nothing(
    admin: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(draft: configedit.Draft) -> None:
        raise ConfigError("crm", "an owner is extension 101")

    monkeypatch.setattr(configedit, "save", refuse)

    response = post(admin, "/employees/101/delete", form_page="/employees/101")

    assert response.status_code == 400
    assert "Not saved: crm: an owner is extension 101" in response.get_data(as_text=True)
    assert [e.number for e in store_config(app).extensions] == ["101", "102", "103"]


def test_a_delete_without_the_csrf_token_is_refused(admin: FlaskClient, app: Flask) -> None:
    assert admin.post("/employees/101/delete").status_code == 400
    assert [e.number for e in store_config(app).extensions] == ["101", "102", "103"]


# --------------------------------------------------------------------------- external calls


def test_the_form_offers_the_external_call_classes_and_the_hourly_limit(
    admin: FlaskClient,
) -> None:
    page = admin.get("/employees/101").get_data(as_text=True)

    options = re.findall(r'<option value="(\w+)" (selected)?', page)
    assert options == [("internal", ""), ("local", ""), ("mobile", ""),
                       ("long_distance", "selected"), ("international", "")]
    assert 'name="external_calls_per_hour" type="number" value="30"' in page


def test_an_employee_may_be_allowed_international_calls_and_a_limit(admin: FlaskClient,
                                                                      app: Flask) -> None:
    form = form_of(admin, "/employees/101", "employee-form")
    form.update(outbound="international", external_calls_per_hour="5")

    assert post(admin, "/employees/101", form).headers["Location"] == "/employees"

    saved = employee(app, "101")
    assert (saved.outbound, saved.external_calls_per_hour) == ("international", 5)
    assert form_of(admin, "/employees/101", "employee-form")["outbound"] == "international"


def test_a_new_employee_gets_the_default_permission_unless_the_form_says_otherwise(
    admin: FlaskClient, app: Flask,
) -> None:
    post(admin, "/employees/new", new_employee())
    post(admin, "/employees/new", new_employee(number="105", outbound="internal",
                                               external_calls_per_hour="1"))

    assert (employee(app, "104").outbound, employee(app, "104").external_calls_per_hour) == (
        "long_distance", 30)
    assert (employee(app, "105").outbound, employee(app, "105").external_calls_per_hour) == (
        "internal", 1)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"outbound": "everywhere"}, "outbound",
     "Choose which external numbers the employee may call from the list."),
    ({"external_calls_per_hour": "0"}, "external_calls_per_hour",
     "Enter a whole number from 1 to 100000."),
    ({"external_calls_per_hour": "lots"}, "external_calls_per_hour",
     "Enter a whole number from 1 to 100000."),
])
def test_a_wrong_external_call_field_is_shown_beside_it(
    admin: FlaskClient, app: Flask, fields: Form, field: str, message: str,
) -> None:
    before = store_config(app)
    response = post(admin, "/employees/101", {"name": "Мария", **fields})

    assert response.status_code == 400
    assert f'<p class="error" id="e-{field}">{message}</p>' in response.get_data(as_text=True)
    assert store_config(app) == before


@pytest.mark.parametrize("name", ["Мария\x00", "Мария\u202eанна", "Ма\x1b[2Jрия"])
def test_a_name_with_control_or_bidi_characters_is_refused_beside_the_field(
    admin: FlaskClient, app: Flask, name: str,
) -> None:
    before = store_config(app)
    response = post(admin, "/employees/101", {"name": name})

    assert response.status_code == 400
    error = re.search(r'<p class="error" id="e-name">([^<]*)</p>',
                      response.get_data(as_text=True))
    assert error is not None
    assert error.group(1).startswith("Not saved: the text must not contain a ")
    assert store_config(app) == before
