"""The partner API: ``create_app(settings)`` builds a Flask app under ``/t2mobile``."""

import json
from dataclasses import dataclass

from flask import Flask, current_app

import t2ctl
from t2ctl import db
from t2ctl.config import Settings
from t2ctl.security.crypto import SecretBox, box_for

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class AppState:
    """What every request needs, built once per app."""

    settings: Settings
    box: SecretBox
    openapi: str


def state() -> AppState:
    return current_app.extensions["t2ctl"]


def create_app(settings: Settings) -> Flask:
    """Build the API for ``settings``; reads no environment.

    It points the process's one database handle (``db.database``) at ``settings``: peewee
    binds models to a single handle, so one process serves one database.
    """
    from t2ctl.api import (
        auth,
        errors,
        limits,
        meta,
        observe,
        openapi,
        orders,
        products,
        proxies,
    )

    # One pool for the process: request threads, job threads, and the engine's own few.
    db.connect(
        settings.database.url,
        max_connections=settings.server.threads + settings.worker.concurrency + 8,
    )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False
    app.extensions["t2ctl"] = AppState(
        settings=settings,
        box=box_for(settings),
        openapi=json.dumps(openapi.document(t2ctl.__version__)),
    )
    errors.register(app)
    observe.init(app)  # first: a request refused by authentication has an id too
    app.before_request(auth.authenticate)  # before the limiter, which keys on the API key
    limits.init(app, settings.server.rate_limit_per_minute)
    for blueprint in (meta.bp, products.bp, orders.bp):
        app.register_blueprint(blueprint, url_prefix="/t2mobile")
    app.teardown_appcontext(_close_db)
    app.wsgi_app = proxies.ClientAddress(app.wsgi_app, settings.server.trusted_proxies)
    return app


def _close_db(_exc: BaseException | None) -> None:
    if not db.database.is_closed():
        db.database.close()
