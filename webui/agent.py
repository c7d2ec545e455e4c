"""(being written)"""

from __future__ import annotations

from flask import Blueprint, render_template

from .security import AGENT, role_required

bp = Blueprint("agent", __name__)


@bp.route("/me")
@role_required(AGENT)
def page() -> str:
    return render_template("base.html")
