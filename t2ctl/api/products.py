"""The catalogue, for partners: active products only, with an ETag."""

import hashlib
import json

from flask import Blueprint, current_app, request

from t2ctl import products

bp = Blueprint("products", __name__)


@bp.get("/products")
def list_products():
    body = json.dumps(
        {"products": [products.public(p) for p in products.listing(active_only=True)]}
    )
    response = current_app.response_class(body, mimetype="application/json")
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)
