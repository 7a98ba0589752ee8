"""The partner's event feed: what its webhooks carry, oldest first, to catch up from."""

from flask import Blueprint, g, jsonify

from t2ctl.api import params
from t2ctl.errors import InvalidParameter
from t2ctl.webhooks import feed, outbox

bp = Blueprint("events", __name__)


@bp.get("/events")
def list_events():
    given = params.query("after", "type", "limit")
    event_type = params.choice(given, "type", outbox.EVENTS)
    limit = params.limit(given)
    found = feed.read(g.partner, after=given.get("after"), event_type=event_type, limit=limit)
    if found is None:
        raise InvalidParameter("after", "names no event of yours: pass an event's id")
    return jsonify({"data": found.events, "hasMore": found.more})
