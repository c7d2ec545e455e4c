"""(being written)"""

from __future__ import annotations

from flask import Blueprint, render_template

from .security import admin_required

bp = Blueprint("reports", __name__)


@bp.route("/reports")
@admin_required
def page() -> str:
    return render_template("base.html")
