"""The partner API: ``create_app(settings)`` builds a Flask app under ``/t2mobile``."""

import json
from dataclasses import dataclass

from flask import Flask, current_app
from flask.json.provider import DefaultJSONProvider

import t2ctl
from t2ctl import db
from t2ctl.config import Settings
from t2ctl.security.crypto import SecretBox

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class AppState:
    """What every request needs, built once per app."""

    settings: Settings
    box: SecretBox
    openapi: str


def state() -> AppState:
    return current_app.extensions["t2ctl"]


def create_app(settings: Settings, box: SecretBox) -> Flask:
    """Build the API for ``settings``, its secrets sealed in ``box``; reads no environment.

    The process's one database handle must already be connected (``startup.connect``): peewee
    binds models to a single handle, so one process serves one database.
    """
    from t2ctl.api import (
        auth,
        errors,
        events,
        limits,
        meta,
        observe,
        openapi,
        orders,
        products,
        proxies,
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, unless replaced here
    app.json.sort_keys = False
    app.extensions["t2ctl"] = AppState(
        settings=settings,
        box=box,
        openapi=json.dumps(openapi.document(t2ctl.__version__)),
    )
    errors.register(app)
    observe.init(app)  # first: a request refused by authentication has an id too
    app.before_request(auth.authenticate)  # before the limiter, which keys on the API key
    limits.init(app, settings.server)
    for blueprint in (meta.bp, products.bp, orders.bp, events.bp):
        app.register_blueprint(blueprint, url_prefix="/t2mobile")
    app.teardown_appcontext(_close_db)
    app.wsgi_app = proxies.ClientAddress(  # type: ignore[method-assign]
        app.wsgi_app, settings.server.trusted_proxies
    )  # Flask's documented way to add WSGI middleware
    return app


def _close_db(_exc: BaseException | None) -> None:
    if not db.is_sqlite() and not db.database.is_closed():
        db.database.close()
