"""Unauthenticated routes: health (with its liveness and readiness probes) and the document.

``/health/live`` answers while the process serves HTTP at all: a supervisor restarts the
daemon when it stops answering. ``/health/ready`` answers 200 only when the daemon can take
work (database reachable, schema current): a balancer sends traffic elsewhere meanwhile.
``/health`` is the contract's summary, with the queue for a person or a dashboard.
"""

from typing import Any

from flask import Blueprint, current_app, jsonify

import t2ctl
from t2ctl import db
from t2ctl.api import state
from t2ctl.monitoring import status

bp = Blueprint("meta", __name__)


def _word(good: bool) -> str:
    return "ok" if good else "unavailable"


@bp.get("/health")
def health():
    body: dict[str, Any] = {"status": "unavailable", "database": "unavailable"}
    try:
        ready = status.readiness()
        if ready.database:
            depth = status.depth()
            counts = depth.jobs.counts
            body = {
                "status": "ok",
                "database": "ok",
                "migrations": ready.migrations,
                "queue": {name: counts[name] for name in ("queued", "running", "dead")},
                "oldestPendingSeconds": depth.oldest_due_seconds,
            }
    except db.DRIVER_ERRORS:  # the database went away between the questions
        pass
    body = {**body, "mode": state().settings.mode, "version": t2ctl.__version__}
    return jsonify(body), 200 if body["status"] == "ok" else 503


@bp.get("/health/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready():
    found = status.readiness()
    body = {
        "status": _word(found.ready),
        "database": _word(found.database),
        "migrations": found.migrations,
        "pending": list(found.pending),
    }
    return jsonify(body), 200 if found.ready else 503


@bp.get("/openapi.json")
def openapi():
    return current_app.response_class(state().openapi, mimetype="application/json")
