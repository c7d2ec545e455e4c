"""(being written)"""

from __future__ import annotations

from flask import Blueprint, render_template

from .security import admin_required

bp = Blueprint("departments", __name__)


@bp.route("/departments")
@admin_required
def list_page() -> str:
    return render_template("base.html")
