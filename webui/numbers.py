"""(being written)"""

from __future__ import annotations

from flask import Blueprint, render_template

from .security import admin_required

bp = Blueprint("numbers", __name__)


@bp.route("/numbers")
@admin_required
def page() -> str:
    return render_template("base.html")
