"""The web UI's HTTPS certificate page (admin only): which certificate the box shows browsers,
and an upload of the office's own certificate and key to replace the self-signed one the box
made at its first start (webui/tls.py). The pair is checked before it replaces anything."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .security import admin_required
from .tls import (
    CERT_NAME,
    MAX_PEM_BYTES,
    CertificateError,
    check_pair,
    describe,
    install,
    tls_directory,
)

LOGGER = logging.getLogger("linebox.web")

bp = Blueprint("tls", __name__, url_prefix="/system/https")


def _certificate_facts() -> dict[str, Any] | None:
    path = tls_directory(current_app.config["DB"]) / CERT_NAME
    if not path.exists():
        return None
    try:
        return describe(path)
    except (RuntimeError, OSError) as error:
        return {"error": str(error)}


@bp.get("")
@admin_required
def page() -> Any:
    return render_template("tls.html", certificate=_certificate_facts(),
                           https_on=current_app.config.get("TLS_STATE") is not None,
                           errors={})


@bp.post("")
@admin_required
def upload() -> Any:
    cert = request.files.get("certificate")
    key = request.files.get("key")
    cert_pem = cert.read(MAX_PEM_BYTES + 1) if cert is not None else b""
    key_pem = key.read(MAX_PEM_BYTES + 1) if key is not None else b""
    try:
        check_pair(cert_pem, key_pem)
    except CertificateError as error:
        return render_template("tls.html", certificate=_certificate_facts(),
                               https_on=current_app.config.get("TLS_STATE") is not None,
                               errors={"upload": _reason(str(error))}), 400
    install(tls_directory(current_app.config["DB"]), cert_pem, key_pem)
    state = current_app.config.get("TLS_STATE")
    if state is not None:
        state.reload()  # new connections get it at once
    LOGGER.info("web UI: the admin installed an uploaded certificate")
    flash(_("The certificate has been replaced. Browsers get it from their next connection."))
    return redirect(url_for("tls.page"))


def _reason(message: str) -> str:
    """The checker's reason in the page's language."""
    reasons: dict[str, str] = {
        "both the certificate and the key are needed":
            _("Both the certificate and the key are needed."),
        "a certificate or key file is larger than 64 KB":
            _("A certificate or key file is larger than 64 KB."),
        "the certificate is not a PEM certificate":
            _("The certificate is not a PEM certificate."),
        "the key is not an unencrypted PEM private key":
            _("The key is not an unencrypted PEM private key."),
        "the key does not belong to the certificate":
            _("The key does not belong to the certificate."),
        "the certificate has expired": _("The certificate has expired."),
    }
    return str(reasons.get(message, _("The certificate or key is unreadable: %(reason)s",
                                      reason=message)))
