"""The "What if" page: the owner replays a period of a department's calls under other settings
and sees the variants side by side, and the channels and agents the busy hour needs.

A replay of weeks of calls takes seconds to minutes of CPU, so it never runs in the web server's
threads: the page starts `linebox whatif … --json --progress FILE` as a process of its own (the
same command the owner can type; the web UI does not import the replay), keeps its output in a
job folder beside the database, and the job's page polls its progress until the table and the
chart can be drawn. One replay runs at a time — the box has calls to carry. Sizing (Erlang B/C
over the busy hour) is a few SQL queries: it is computed with the page.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from firmware import reports as queries
from firmware.whatif.sizing import sizing

from .db import get_store
from .forms import FormErrors
from .security import admin_required
from .strategies import STRATEGY_CHOICES

bp = Blueprint("whatif", __name__)

DEFAULT_DAYS = 28
MAX_DAYS = 366
SEEDS_CHOICES = (5, 10, 20)
DEFAULT_SEEDS = 20
VARIANTS = 2  # variant columns on the form (the department as configured is always run too)
MAX_ADDED = 5
JOBS_KEPT = 10
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
SETTING_LINE = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)?=[A-Za-z0-9_.,+-]{1,200}$")
# Numbers the form takes, with their ranges (the configuration checks them again).
NUMBER_FIELDS = {"ring_timeout_s": (5, 600), "wrap_up_s": (0, 600),
                 "queue.max_wait_s": (10, 3600)}

_running: dict[str, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()  # guards _running
_starting = threading.Lock()  # one POST at a time checks for a running replay and starts one


# --- jobs ---------------------------------------------------------------------------------------


def jobs_dir() -> Path:
    return Path(current_app.config["DB"]).resolve().parent / "whatif"


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    path: Path

    @property
    def state(self) -> str:
        if (self.path / "result.json").exists():
            return "done"
        if (self.path / "error.txt").exists():
            return "failed"
        return "running"

    @property
    def progress(self) -> float:
        try:
            return max(0.0, min(1.0, float((self.path / "progress").read_text())))
        except (OSError, ValueError):
            return 0.0

    def meta(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.path / "request.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}


def find_job(job_id: str) -> Job:
    if not JOB_ID.match(job_id):
        abort(404)
    path = jobs_dir() / job_id
    if not path.is_dir():
        abort(404)
    return Job(job_id, path)


def recent_jobs() -> list[Job]:
    base = jobs_dir()
    if not base.is_dir():
        return []
    found = [Job(p.name, p) for p in base.iterdir() if p.is_dir() and JOB_ID.match(p.name)]
    found.sort(key=lambda job: job.path.stat().st_mtime, reverse=True)
    for old in found[JOBS_KEPT:]:
        shutil.rmtree(old.path, ignore_errors=True)
    return found[:JOBS_KEPT]


def _watch(job: Job, process: subprocess.Popen[bytes]) -> None:
    """Wait for the replay and file its outcome (a thread per job; the page only reads files)."""
    try:
        _, stderr = process.communicate()
        if process.returncode == 0:
            os.replace(job.path / "result.json.part", job.path / "result.json")
        else:
            message = stderr.decode("utf-8", "replace").strip().splitlines()
            (job.path / "error.txt").write_text(
                message[-1].removeprefix("linebox: ") if message else
                f"exit status {process.returncode}", encoding="utf-8")
    finally:
        with _lock:
            _running.pop(job.id, None)


def start_job(arguments: list[str], meta: dict[str, Any]) -> Job:
    job_id = secrets.token_urlsafe(9)
    path = jobs_dir() / job_id
    path.mkdir(parents=True, mode=0o700)
    job = Job(job_id, path)
    (path / "request.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    command = [sys.executable, "-m", "firmware", "--log-level", "WARNING", "whatif",
               "--db", str(Path(current_app.config["DB"]).resolve()), *arguments,
               "--json", "--progress", str(path / "progress")]
    with (path / "result.json.part").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, cwd=_repository_root())
    with _lock:
        _running[job_id] = process
    threading.Thread(target=_watch, args=(job, process), daemon=True,
                     name=f"whatif-{job_id}").start()
    return job


def _repository_root() -> str:
    # Where `python -m firmware` resolves (the installed package or this checkout).
    return str(Path(__file__).resolve().parent.parent)


def busy() -> bool:
    with _lock:
        return any(process.poll() is None for process in _running.values())


# --- the form -----------------------------------------------------------------------------------


def _default_period() -> tuple[date, date]:
    end = date.today() - timedelta(days=1)
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def read_form(form: Any, departments: list[str], members: dict[str, list[str]]) -> tuple[
        list[str], dict[str, Any], FormErrors]:
    """The command's arguments from the form; the values to show again; errors by field."""
    errors = FormErrors()
    values: dict[str, Any] = {key: (form.get(key) or "").strip() for key in form}
    department = values.get("department", "")
    if department not in departments:
        errors["department"] = _("Choose a department.")
    period: list[date] = []
    for key in ("from", "to"):
        try:
            period.append(date.fromisoformat(values.get(key, "")))
        except ValueError:
            errors[key] = _("A date, e.g. 2026-11-01.")
    if len(period) == 2:
        if period[1] < period[0]:
            errors["to"] = _("The period ends before it starts.")
        elif (period[1] - period[0]).days + 1 > MAX_DAYS:
            errors["to"] = _("At most %(days)d days.", days=MAX_DAYS)
    seeds = values.get("seeds", str(DEFAULT_SEEDS))
    if seeds not in {str(s) for s in SEEDS_CHOICES}:
        errors["seeds"] = _("Choose how many runs.")
    arguments = ["--department", department, "--seeds", seeds]
    if len(period) == 2:
        arguments += ["--from", period[0].isoformat(), "--to", period[1].isoformat()]
    strategies = {value for value, _name, _text in STRATEGY_CHOICES}
    chosen = 0
    for index in range(1, VARIANTS + 1):
        settings: list[str] = []
        strategy = values.get(f"v{index}-strategy", "")
        if strategy:
            if strategy not in strategies:
                errors[f"v{index}-strategy"] = _("Choose a strategy.")
            settings.append(f"strategy={strategy}")
        for key, (low, high) in NUMBER_FIELDS.items():
            name = f"v{index}-{key}"
            text = values.get(name, "")
            if not text:
                continue
            if not text.isdigit() or not low <= int(text) <= high:
                errors[name] = _("A whole number from %(low)d to %(high)d.", low=low, high=high)
            settings.append(f"{key}={text}")
        left_out = [m for m in form.getlist(f"v{index}-remove")
                    if m in members.get(department, [])]
        if left_out:
            settings.append("remove=" + ",".join(left_out))
        values[f"v{index}-remove"] = left_out
        added = values.get(f"v{index}-add", "")
        if added and added != "0":
            if not added.isdigit() or not 1 <= int(added) <= MAX_ADDED:
                errors[f"v{index}-add"] = _("From 0 to %(max)d.", max=MAX_ADDED)
            settings.append(f"add={added}")
        for line in values.get(f"v{index}-other", "").splitlines():
            line = line.strip()
            if not line:
                continue
            if not SETTING_LINE.match(line):
                errors[f"v{index}-other"] = _("One setting a line, as key=value: %(line)s",
                                              line=line[:60])
                break
            settings.append(line)
        if settings:
            chosen += 1
            arguments.append("--variant")
            for setting in settings:
                arguments += ["--set", setting]
    if not chosen and "form" not in errors:
        errors["form"] = _("Change at least one setting in a variant.")
    return arguments, values, errors


def _context(values: dict[str, Any], errors: FormErrors) -> dict[str, Any]:
    store = get_store()
    config = store.load_config()
    tz = queries.site_zone(store)
    start, end = _default_period()
    try:
        start = date.fromisoformat(values.get("from") or "") or start
        end = date.fromisoformat(values.get("to") or "") or end
    except ValueError:
        pass
    report = sizing(store, queries.local_midnight(start, tz),
                    queries.local_midnight(end + timedelta(days=1), tz), tz=tz, config=config)
    departments = [(d.number, f"{d.number} — {d.name}") for d in config.departments]
    return {
        "values": {"from": start.isoformat(), "to": end.isoformat(),
                   "seeds": str(DEFAULT_SEEDS), **values},
        "errors": errors, "departments": departments,
        "members": {d.number: [m.extension for m in d.members] for d in config.departments},
        "strategies": [("", _("— as configured —"))] + [
            (value, str(name)) for value, name, _text in STRATEGY_CHOICES],
        "seeds_choices": [(str(s), str(s)) for s in SEEDS_CHOICES],
        "variants": range(1, VARIANTS + 1), "sizing": report, "jobs": recent_jobs(),
        "busy": busy(), "max_added": MAX_ADDED,
    }


@bp.route("/whatif", methods=["GET"])
@admin_required
def page() -> Any:
    # The period may come in the address (?from=&to=): the sizing below is for that period.
    asked = {key: request.args.get(key, "") for key in ("from", "to", "department")
             if request.args.get(key)}
    return render_template("whatif.html", **_context(asked, FormErrors()))


@bp.route("/whatif", methods=["POST"])
@admin_required
def run() -> Any:
    config = get_store().load_config()
    departments = [d.number for d in config.departments]
    members = {d.number: [m.extension for m in d.members] for d in config.departments}
    arguments, values, errors = read_form(request.form, departments, members)
    job = None
    if not errors:
        # One replay at a time, decided and started under one lock: two POSTs at once (the
        # web server has several threads) must not both find the box idle.
        with _starting:
            if busy():
                errors["form"] = _("A replay is running; wait for it to finish.")
            else:
                job = start_job(arguments, {
                    "department": values["department"], "from": values["from"],
                    "to": values["to"], "started": time.time()})
    if job is None:
        return render_template("whatif.html", **_context(values, errors)), 400
    return redirect(url_for("whatif.job_page", job_id=job.id))


@bp.route("/whatif/<job_id>")
@admin_required
def job_page(job_id: str) -> Any:
    job = find_job(job_id)
    result: dict[str, Any] | None = None
    error = ""
    if job.state == "done":
        try:
            result = json.loads((job.path / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            error = _("The replay's result cannot be read.")
    elif job.state == "failed":
        error = (job.path / "error.txt").read_text(encoding="utf-8")
    return render_template("whatif_job.html", job=job, meta=job.meta(), result=result,
                           error=error, chart=variant_chart(result) if result else None)


@bp.route("/whatif/<job_id>/status")
@admin_required
def job_status(job_id: str) -> Response:
    job = find_job(job_id)
    return Response(json.dumps({"state": job.state, "progress": round(job.progress, 4)}),
                    mimetype="application/json")


# --- the chart ----------------------------------------------------------------------------------

CHART_WIDTH = 720
CHART_HEIGHT = 240
CHART_LEFT = 44
CHART_BOTTOM = 200
CHART_TOP = 12
SHARES = ("answered", "missed", "abandoned")


def variant_chart(result: dict[str, Any]) -> dict[str, Any]:
    """Bars of each variant's answered / missed / abandoned shares (means) with whiskers from
    the 5th to the 95th percentile of its runs — drawn on the server, no script needed."""
    variants = result.get("variants", [])
    slot = (CHART_WIDTH - CHART_LEFT - 8) / max(1, len(variants))
    bar_width = slot * 0.8 / len(SHARES)
    height = CHART_BOTTOM - CHART_TOP

    def y(share: float) -> float:
        return round(CHART_BOTTOM - max(0.0, min(1.0, share)) * height, 1)

    groups = []
    for index, variant in enumerate(variants):
        x0 = CHART_LEFT + index * slot + slot * 0.1
        bars = []
        for position, share in enumerate(SHARES):
            figure = variant[share]
            x = round(x0 + position * bar_width, 1)
            bars.append({"kind": share, "x": x, "width": round(bar_width * 0.9, 1),
                         "y": y(figure["mean"]), "height": round(CHART_BOTTOM - y(figure["mean"]),
                                                                  1),
                         "whisker_x": round(x + bar_width * 0.45, 1), "low_y": y(figure["low"]),
                         "high_y": y(figure["high"]), "mean": figure["mean"]})
        groups.append({"name": variant["name"], "label_x": round(x0 + slot * 0.4, 1),
                       "bars": bars})
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": CHART_LEFT,
            "right": CHART_WIDTH - 8, "bottom": CHART_BOTTOM, "groups": groups,
            "ticks": [(f"{p}%", y(p / 100)) for p in (0, 25, 50, 75, 100)]}
