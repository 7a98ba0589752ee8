"""Unauthenticated routes: health and the OpenAPI document."""

from flask import Blueprint, current_app, jsonify

import t2ctl
from t2ctl import db
from t2ctl.api import state
from t2ctl.errors import Unavailable

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health():
    try:
        db.ping()
        reachable = True
    except Unavailable:
        reachable = False
    body = {
        "status": "ok" if reachable else "unavailable",
        "database": "ok" if reachable else "unavailable",
        "mode": state().settings.mode,
        "version": t2ctl.__version__,
    }
    return jsonify(body), 200 if reachable else 503


@bp.get("/openapi.json")
def openapi():
    return current_app.response_class(state().openapi, mimetype="application/json")
