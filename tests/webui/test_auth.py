"""Login, roles, CSRF, rate limiting, cookie flags, the first-run wizard and the language."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.webui.conftest import (
    ADMIN_PASSWORD,
    csrf_of,
    finish_first_step,
    post,
    setup_code_of,
    store_config,
)
from webui.security import LoginLimiter


def test_every_page_but_login_and_first_run_needs_a_login(client: FlaskClient) -> None:
    for path in ("/monitor", "/employees", "/departments", "/numbers", "/rules", "/reports",
                 "/system", "/me", "/setup/provider", "/setup/department"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login"), path
    assert client.get("/login").status_code == 200


def test_admin_logs_in_and_out(client: FlaskClient) -> None:
    response = post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/monitor"
    assert client.get("/monitor").status_code == 200
    post(client, "/logout", form_page="/monitor")
    assert client.get("/monitor").status_code == 302


def test_wrong_password_is_refused_with_a_message_in_russian(client: FlaskClient) -> None:
    response = post(client, "/login", {"user": "admin", "password": "nope"})
    assert response.status_code == 401
    assert "Неверное имя пользователя или пароль." in response.get_data(as_text=True)


def test_login_attempts_are_rate_limited(client: FlaskClient) -> None:
    for _ in range(5):
        assert post(client, "/login", {"user": "admin", "password": "x"}).status_code == 401
    response = post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 429  # even the right password waits out the window
    assert "Слишком много неудачных попыток" in response.get_data(as_text=True)


def test_limiter_window_slides() -> None:
    limiter = LoginLimiter(attempts_per_address=2, attempts_per_account=10, window_s=10.0)
    limiter.failed("admin", "a", now=0.0)
    limiter.failed("admin", "a", now=1.0)
    assert limiter.retry_after("admin", "a", now=2.0) == 8
    assert limiter.retry_after("admin", "b", now=2.0) == 0
    assert limiter.retry_after("admin", "a", now=10.5) == 0  # the first failure left the window


def test_a_post_without_the_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    response = client.post("/login", data={"user": "admin", "password": ADMIN_PASSWORD,
                                           "csrf_token": "forged"})
    assert response.status_code == 400


def test_session_cookie_is_httponly_and_samesite(client: FlaskClient) -> None:
    response = post(client, "/login", {"user": "admin", "password": ADMIN_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_pages_load_nothing_from_elsewhere(client: FlaskClient) -> None:
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "http://" not in response.get_data(as_text=True)
    assert "https://" not in response.get_data(as_text=True)


def test_login_does_not_redirect_to_another_site(client: FlaskClient) -> None:
    token = csrf_of(client)
    response = client.post("/login?next=//evil.example/x", data={
        "user": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_an_agent_logs_in_with_the_phone_password_and_sees_only_their_page(
    client: FlaskClient,
) -> None:
    response = post(client, "/login", {"user": "101", "password": "pw-101-secret"})
    assert response.headers["Location"] == "/me"
    assert client.get("/me").status_code == 200
    assert client.get("/employees").status_code == 403
    assert post(client, "/login", {"user": "101", "password": "pw-102-secret"}).status_code \
        == 401


def test_language_switches_to_english_and_back(admin: FlaskClient) -> None:
    assert "Employees" in admin.get("/monitor").get_data(as_text=True)
    post(admin, "/language/ru", {"back": "/monitor"}, form_page="/monitor")
    assert "Сотрудники" in admin.get("/monitor").get_data(as_text=True)


# --------------------------------------------------------------------------- first run


def test_first_run_forces_an_admin_password(fresh_app: Flask) -> None:
    client = fresh_app.test_client()
    assert client.get("/").headers["Location"] == "/setup"
    assert client.get("/login").headers["Location"] == "/setup"
    code = setup_code_of(fresh_app)
    response = post(client, "/setup", {"code": code, "password": "short", "confirm": "short"})
    assert response.status_code == 400
    assert "Не короче 8 символов." in response.get_data(as_text=True)
    response = post(client, "/setup", {"code": code, "password": "long enough",
                                       "confirm": "different"})
    assert "Пароли не совпадают." in response.get_data(as_text=True)
    response = post(client, "/setup", {"code": code, "password": "long enough",
                                       "confirm": "long enough"})
    assert response.headers["Location"] == "/setup/provider"
    # Once set, the first-run page is closed.
    fresh = fresh_app.test_client()
    assert fresh.get("/setup").headers["Location"] == "/"


def test_first_run_provider_and_department_steps(fresh_app: Flask) -> None:
    client = finish_first_step(fresh_app.test_client(), fresh_app)
    bad = post(client, "/setup/provider", {"host": "", "port": "0", "trunk_channels": "2",
                                           "number": "abc", "channels": "101"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    for message in ("Укажите имя или адрес сервера провайдера.",
                    "Введите целое число от 1 до 65535.", "Введите целое число от 3 до 100.",
                    "Введите номер цифрами"):
        assert message in text
    # Step 3 before step 2 saved: the department comes first, then the number can point at it.
    response = post(client, "/setup/department", {
        "number": "300", "name": "Продажи", "strategy": "in_order",
        "employees": "101 Мария\n102 Иван\n103 Ольга"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("<code>") == 3  # three passwords, shown once
    response = post(client, "/setup/provider", {
        "host": "sip.example.ru", "port": "5060", "username": "box", "password": "pw",
        "register": "on", "trunk_channels": "10", "number": "74951234567", "channels": "5"})
    assert response.headers["Location"] == "/setup/department"
    config = store_config(fresh_app)
    assert [(d.number, d.strategy, [m.extension for m in d.members])
            for d in config.departments][0] == ("300", "in_order", ["101", "102", "103"])
    assert [(n.number, n.channels, n.destination) for n in config.numbers] == [
        ("74951234567", 5, "300")]
    assert config.trunks[0].host == "sip.example.ru" and config.trunks[0].register


def test_first_run_department_errors_are_shown_next_to_the_fields(fresh_app: Flask) -> None:
    client = finish_first_step(fresh_app.test_client(), fresh_app)
    response = post(client, "/setup/department", {
        "number": "x", "name": "", "strategy": "fastest", "employees": "abc Мария"})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    for field in ("number", "name", "strategy", "employees"):
        assert f'id="e-{field}"' in text, field


def test_the_wizard_department_gets_the_office_number(app: Flask, admin: FlaskClient) -> None:
    response = post(admin, "/setup/department", {
        "number": "300", "name": "Service", "strategy": "ring_all", "employees": "103 Ольга"})
    assert response.status_code == 200
    assert "<code>" not in response.get_data(as_text=True)  # 103 existed: no new password
    config = store_config(app)
    assert [n.destination for n in config.numbers] == ["300"]
    assert [d.number for d in config.departments] == ["300", "200"]


def test_no_page_loads_anything_from_the_internet() -> None:
    """Every asset ships with the package: no template or static file points at another
    host (the only URLs are examples in help texts)."""
    import re
    from pathlib import Path

    import webui

    root = Path(webui.__file__).parent
    pattern = re.compile(r"""(?:src|href|action|url\()\s*=?\s*["']?\s*(?:https?:)?//""")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in [*root.glob("templates/*.html"), *root.glob("static/*")]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
