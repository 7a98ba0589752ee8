"""Unauthenticated routes: health (with its liveness and readiness probes), the document, and
the API reference that renders it.

``/health/live`` answers while the process serves HTTP at all: a supervisor restarts the
daemon when it stops answering. ``/health/ready`` answers 200 only when the daemon can take
work (database reachable, schema current): a balancer sends traffic elsewhere meanwhile.
``/health`` is the contract's summary, with the queue for a person or a dashboard.

``/docs`` is Swagger UI over ``/openapi.json``. Its assets are the dist files that
flask-swagger-ui ships in its wheel, served by this blueprint, so the page fetches nothing from
a CDN (a partner's or an operator's network may block one). Every URL in the page is relative
to it, so it works behind a proxy that moves ``/t2mobile`` too.
"""

from importlib.resources import files
from typing import Any

from flask import Blueprint, current_app, jsonify

import t2ctl
from t2ctl import db
from t2ctl.api import state
from t2ctl.monitoring import status

# Only the assets: flask-swagger-ui's own blueprint links them by absolute path and puts the
# page at /docs/ behind a redirect. Its static route is meta's, so auth lets it through too.
SWAGGER_UI = str(files("flask_swagger_ui") / "dist")

bp = Blueprint("meta", __name__, static_folder=SWAGGER_UI, static_url_path="/docs")

# validatorUrl null: Swagger UI would otherwise show a badge from validator.swagger.io.
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>t2ctl partner API reference</title>
<link rel="stylesheet" href="docs/index.css">
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true
});
</script>
</body>
</html>
"""


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


@bp.get("/docs")
def docs():
    return current_app.response_class(DOCS_PAGE, mimetype="text/html")
