"""A Zoho Inventory stand-in that speaks the real wire format, for `t2ctl sandbox` and tests.

What it reproduces: the OAuth refresh at ``/oauth/v2/token`` (refusals as HTTP 200 with an
``error`` field, and Zoho's 10 tokens per 10 minutes), the ``Zoho-oauthtoken`` header and the
``organization_id`` parameter on every API call, the ``{code, message}`` envelope, 201 on
create, string ids, ``page_context`` paging (the sales orders sorted by ``sort_column`` and
``sort_order``), a sales order's confirm and void (each refused when already done), 401 with
code 57 for a bad token, and 429 with ``X-Rate-Limit-*`` headers past ``limit`` calls per
``window`` seconds for the organization.

To rehearse failures it can be told, for the next calls to a route, to answer with an error
(``fail``), to close the connection without an answer (``reset``), to answer only after a
stall (``stall``: a timeout, when longer than the client waits; the call takes effect after
it), or to send the headers at once and the body a byte at a time (``dribble``); to delay every
call (``latency``); or to stop a call before or after it takes effect until released (``hold``).
And it lets a test change its sales orders behind the gateway's back, as a person in Zoho
would (``add_sales_order``, ``edit_sales_order``, ``delete_sales_order``).
"""

import itertools
import json
import logging
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider

logger = logging.getLogger(__name__)

TOKEN_LIMIT = 10  # access tokens per refresh token ...
TOKEN_WINDOW = 600  # ... per this many seconds
# The list's sort_column values the stand-in knows, and the field each sorts by (created_time
# by id: ids grow with time).
SORT_COLUMNS = {
    "created_time": "salesorder_id",
    "date": "date",
    "reference_number": "reference_number",
}
NOT_AUTHORIZED = {"code": 57, "message": "You are not authorized to perform this operation"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # below /inventory/v1, or /oauth/v2/token
    status: int  # 0: the connection was closed without an answer (``reset``)


# A view that sets this key in the WSGI environ gets its connection closed without an answer
# (``sandbox.in_background`` serves it so); elsewhere it gets the placeholder answer.
CLOSE_CONNECTION = "t2ctl.sandbox.close_connection"


@dataclass
class Fault:
    """What the next ``times`` calls matching ``method`` and ``path`` get: an error answer
    (``status``, ``body``, ``headers``), a closed connection (``reset``), or their real
    answer late (``stall`` seconds before it) or slowly (its body over ``dribble`` seconds)."""

    method: str
    path: re.Pattern
    times: int
    status: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    stall: float = 0.0
    dribble: float = 0.0


@dataclass
class Hold:
    """A call stopped on its way: ``reached`` is set when one arrives; ``release()`` lets it
    go on, ``release(drop=True)`` answers 503 without it taking effect (``after=False``)."""

    method: str
    path: re.Pattern
    after: bool
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    drop: bool = False

    def release(self, *, drop: bool = False) -> None:
        self.drop = drop
        self.released.set()


class ZohoStandIn:
    """The state of one fake Zoho account with one organization, and its Flask app."""

    def __init__(
        self,
        *,
        client_id: str = "1000.SANDBOXCLIENT",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "1000.sandbox-refresh-token",
        organization_id: str = "10234695",
        limit: int = 100,
        window: float = 60.0,
        token_ttl: int = 3600,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.organization_id = organization_id
        self.limit = limit
        self.window = window
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self.tokens: dict[str, float] = {}
        self.minted: list[float] = []
        self.contacts: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.salesorders: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.latency = 0.0  # seconds every API call waits before it is handled
        self._recent: deque[float] = deque()
        self._ids = itertools.count(4815000000044001)
        self._numbers = itertools.count(1)

    # -- what tests and operators set up -----------------------------------------------------

    def add_item(
        self,
        sku: str,
        name: str,
        rate: float,
        *,
        description: str = "",
        active: bool = True,
        term_months: int | str | None = None,
    ) -> str:
        item_id = self._new_id()
        fields = []
        if term_months is not None:
            fields.append(
                {"customfield_id": self._new_id(), "label": "Term Months", "value": term_months}
            )
        with self.lock:
            self.items[item_id] = {
                "item_id": item_id,
                "name": name,
                "sku": sku,
                "description": description,
                "rate": rate,
                "status": "active" if active else "inactive",
                "unit": "pcs",
                "custom_fields": fields,
            }
        return item_id

    def fail(
        self,
        method: str,
        path: str,
        *,
        status: int,
        times: int = 1,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` calls matching ``path`` (a regex) with ``status``."""
        default = {"code": 1 if status < 500 else 5, "message": f"Simulated HTTP {status}"}
        self._add(Fault(method, re.compile(path), times, status, body or default, headers or {}))

    def reset(self, method: str, path: str, *, times: int = 1) -> None:
        """Close the connection of the next ``times`` calls without an answer, before they
        take effect."""
        self._add(Fault(method, re.compile(path), times, reset=True))

    def stall(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` calls for ``seconds`` before handling them: a client that
        gives up sooner times out, and the call still takes effect afterwards."""
        self._add(Fault(method, re.compile(path), times, stall=seconds))

    def dribble(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Send the next ``times`` answers' headers at once and their body spread evenly
        over ``seconds``."""
        self._add(Fault(method, re.compile(path), times, dribble=seconds))

    def calm(self) -> None:
        """Drop every fault not yet met: Zoho is well again."""
        with self.lock:
            self.faults.clear()

    def _add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def hold(self, method: str, path: str, *, after: bool = False) -> Hold:
        held = Hold(method, re.compile(path), after)
        with self.lock:
            self.holds.append(held)
        return held

    def api_calls(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Calls to the Inventory API (token refreshes not included)."""
        with self.lock:
            return [
                c
                for c in self.calls
                if c.path != "/oauth/v2/token"
                and (method is None or c.method == method)
                and (path is None or re.fullmatch(path, c.path))
            ]

    def statuses(self) -> list[int]:
        with self.lock:
            return [c.status for c in self.calls if c.path != "/oauth/v2/token"]

    # -- the app ---------------------------------------------------------------------------------

    def app(self) -> Flask:
        app = Flask(__name__)
        assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, unless one is set
        app.json.sort_keys = False
        app.add_url_rule("/oauth/v2/token", view_func=self._token, methods=["POST"])
        app.before_request(self._before)
        app.after_request(self._after)
        api = "/inventory/v1"
        for rule, view, methods in (
            ("/organizations", self._organizations, ["GET"]),
            ("/contacts", self._contacts, ["GET", "POST"]),
            ("/items", self._items, ["GET"]),
            ("/items/<item_id>", self._item, ["GET"]),
            ("/salesorders", self._salesorders, ["GET", "POST"]),
            ("/salesorders/<so_id>", self._salesorder, ["GET"]),
            ("/salesorders/<so_id>/status/confirmed", self._confirm, ["POST"]),
            ("/salesorders/<so_id>/status/void", self._void, ["POST"]),
        ):
            app.add_url_rule(api + rule, view_func=view, methods=methods)
        return app

    def _before(self) -> Response | None:
        path = request.path.removeprefix("/inventory/v1")
        g.path = path
        if path == request.path:
            return None  # not the API: the token endpoint, or the webhook receiver
        if self.latency:
            time.sleep(self.latency)
        held = self._matching_hold(path, after=False)
        if held is not None and held.drop:
            return _answer(503, {"code": 5, "message": "Service unavailable"})
        fault = self._take_fault(path)
        g.fault = fault
        if fault is not None:
            if fault.reset:
                request.environ[CLOSE_CONNECTION] = True
                return _answer(503, {"code": 5, "message": "Connection closed"})
            if fault.status:
                return _answer(fault.status, fault.body, fault.headers)
            time.sleep(fault.stall)
        if not self._authorised():
            return _answer(401, NOT_AUTHORIZED)
        if path != "/organizations" and request.args.get("organization_id") != self.organization_id:
            return _answer(
                400, {"code": 6041, "message": "Invalid value passed for organization_id."}
            )
        wait = self._over_limit()
        if wait is not None:
            return _answer(
                429,
                {"code": 44, "message": "You have made too many requests. Please try later."},
                {
                    "X-Rate-Limit-Limit": str(self.limit),
                    "X-Rate-Limit-Remaining": "0",
                    "X-Rate-Limit-Reset": str(wait),
                },
            )
        return None

    def _take_fault(self, path: str) -> Fault | None:
        """The first fault set for this call, one of its ``times`` used up."""
        with self.lock:
            fault = next(
                (f for f in self.faults if f.method == request.method and f.path.fullmatch(path)),
                None,
            )
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        return fault

    def _after(self, response: Response) -> Response:
        path = g.get("path", request.path)
        api = path != request.path
        if api:
            self._matching_hold(path, after=True)
        status = 0 if request.environ.get(CLOSE_CONNECTION) else response.status_code
        if api or path == "/oauth/v2/token":
            with self.lock:
                self.calls.append(Call(request.method, path, status))
            logger.info("zoho stand-in: %s %s -> %s", request.method, path, status)
        fault = g.get("fault")
        if fault is not None and fault.dribble:
            return _dribbled(response, fault.dribble)
        return response

    def _matching_hold(self, path: str, *, after: bool) -> Hold | None:
        with self.lock:
            held = next(
                (
                    h
                    for h in self.holds
                    if h.after == after and h.method == request.method and h.path.fullmatch(path)
                ),
                None,
            )
            if held is not None:
                self.holds.remove(held)
        if held is not None:
            held.reached.set()
            held.released.wait(timeout=300)
        return held

    def _authorised(self) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self.lock:
            return scheme == "Zoho-oauthtoken" and self.tokens.get(token, 0) > time.time()

    def _over_limit(self) -> int | None:
        """Seconds until the organization may call again, or None if within its limit."""
        now = time.monotonic()
        with self.lock:
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                return max(1, int(self._recent[0] + self.window - now + 0.999))
            self._recent.append(now)
        return None

    # -- OAuth -----------------------------------------------------------------------------------

    def _token(self) -> Response:
        given = {**request.args, **request.form}
        with self.lock:
            if given.get("client_id") != self.client_id or given.get("client_secret") != (
                self.client_secret
            ):
                return _answer(200, {"error": "invalid_client"})
            if given.get("grant_type") != "refresh_token" or given.get("refresh_token") != (
                self.refresh_token
            ):
                return _answer(200, {"error": "invalid_code"})
            now = time.time()
            self.minted = [t for t in self.minted if t > now - TOKEN_WINDOW]
            if len(self.minted) >= TOKEN_LIMIT:
                return _answer(
                    400,
                    {
                        "error_description": "You have made too many requests continuously. "
                        "Please try again after some time.",
                        "error": "Access Denied",
                        "status": "failure",
                    },
                )
            token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            self.minted.append(now)
            self.tokens[token] = now + self.token_ttl
        return _answer(
            200,
            {
                "access_token": token,
                "scope": "ZohoInventory.FullAccess.all",
                "api_domain": request.host_url.rstrip("/"),
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
            },
        )

    def expire_tokens(self) -> None:
        """Every access token minted so far stops working, as after an hour."""
        with self.lock:
            self.tokens.clear()

    # -- the API ---------------------------------------------------------------------------------

    def _organizations(self) -> Response:
        org = {
            "organization_id": self.organization_id,
            "name": "IconTech (sandbox)",
            "currency_code": "NGN",
            "time_zone": "Africa/Lagos",
        }
        return _answer(200, {"code": 0, "message": "success", "organizations": [org]})

    def _contacts(self) -> Response:
        if request.method == "GET":
            email = request.args.get("email", "").lower()
            with self.lock:
                found = [
                    c for c in self.contacts.values() if not email or c["email"].lower() == email
                ]
            return _page(found, "contacts")
        body = _body()
        name = str(body.get("contact_name", "")).strip()
        if not name:
            return _answer(400, {"code": 4, "message": "Contact name is required."})
        person = (body.get("contact_persons") or [{}])[0]
        with self.lock:
            if any(c["contact_name"] == name for c in self.contacts.values()):
                return _answer(
                    400, {"code": 3062, "message": f'The customer "{name}" already exists.'}
                )
            contact = {
                "contact_id": self._new_id(),
                "contact_name": name,
                "contact_type": body.get("contact_type", "customer"),
                "email": person.get("email", ""),
                "mobile": person.get("mobile", ""),
                "status": "active",
            }
            self.contacts[contact["contact_id"]] = contact
        return _answer(
            201, {"code": 0, "message": "The contact has been added.", "contact": contact}
        )

    def _items(self) -> Response:
        sku = request.args.get("sku")
        with self.lock:
            found = [i for i in self.items.values() if sku is None or i["sku"] == sku]
        return _page(found, "items")

    def _item(self, item_id: str) -> Response:
        with self.lock:
            item = self.items.get(item_id)
        if item is None:
            return _answer(404, {"code": 1002, "message": "Item does not exist."})
        return _answer(200, {"code": 0, "message": "success", "item": item})

    def _salesorders(self) -> Response:
        if request.method == "GET":
            reference = request.args.get("reference_number")
            with self.lock:
                found = [
                    _summary(s)
                    for s in self.salesorders.values()
                    if reference is None or s["reference_number"] == reference
                ]
            column = request.args.get("sort_column", "created_time")
            if column not in SORT_COLUMNS:
                return _answer(
                    400, {"code": 2, "message": f"Invalid value for sort_column: {column}"}
                )
            found.sort(
                key=lambda s: (s[SORT_COLUMNS[column]], int(s["salesorder_id"])),
                reverse=request.args.get("sort_order", "A") == "D",
            )
            return _page(found, "salesorders")
        body = _body()
        with self.lock:
            if body.get("customer_id") not in self.contacts:
                return _answer(400, {"code": 1002, "message": "Customer does not exist."})
            lines = body.get("line_items") or []
            if not lines or any(line.get("item_id") not in self.items for line in lines):
                return _answer(400, {"code": 1002, "message": "Item does not exist."})
            order = {
                "salesorder_id": self._new_id(),
                "salesorder_number": f"SO-{next(self._numbers):05d}",
                "reference_number": str(body.get("reference_number", "")),
                "customer_id": body["customer_id"],
                "date": body.get("date", ""),
                "status": "draft",
                "currency_code": "NGN",
                "line_items": [
                    {
                        **line,
                        "line_item_id": self._new_id(),
                        "name": self.items[line["item_id"]]["name"],
                    }
                    for line in lines
                ],
                "total": sum(
                    float(line.get("rate", 0)) * int(line.get("quantity", 1)) for line in lines
                ),
            }
            self.salesorders[order["salesorder_id"]] = order
        return _answer(
            201, {"code": 0, "message": "Sales Order has been created.", "salesorder": order}
        )

    def _salesorder(self, so_id: str) -> Response:
        with self.lock:
            order = self.salesorders.get(so_id)
        if order is None:
            return _answer(404, {"code": 1002, "message": "Sales Order does not exist."})
        return _answer(200, {"code": 0, "message": "success", "salesorder": order})

    def _confirm(self, so_id: str) -> Response:
        with self.lock:
            order = self.salesorders.get(so_id)
            if order is None:
                return _answer(404, {"code": 1002, "message": "Sales Order does not exist."})
            if order["status"] != "draft":
                return _answer(400, {"code": 36012, "message": "Sales order is already confirmed."})
            order["status"] = "confirmed"
        return _answer(
            200, {"code": 0, "message": "Sales Order status has been changed to Confirmed."}
        )

    def _void(self, so_id: str) -> Response:
        with self.lock:
            order = self.salesorders.get(so_id)
            if order is None:
                return _answer(404, {"code": 1002, "message": "Sales Order does not exist."})
            if order["status"] == "void":
                return _answer(400, {"code": 36014, "message": "Sales order is already void."})
            order["status"] = "void"
        return _answer(200, {"code": 0, "message": "Sales Order status has been changed to Void."})

    def add_sales_order(
        self, reference: str, total: float, *, date: str, status: str = "confirmed"
    ) -> dict[str, Any]:
        """A sales order made in Zoho by hand, behind the gateway's back."""
        with self.lock:
            order: dict[str, Any] = {
                "salesorder_id": self._new_id(),
                "salesorder_number": f"SO-{next(self._numbers):05d}",
                "reference_number": reference,
                "customer_id": "",
                "date": date,
                "status": status,
                "currency_code": "NGN",
                "line_items": [],
                "total": total,
            }
            self.salesorders[order["salesorder_id"]] = order
        return dict(order)

    def edit_sales_order(self, reference: str, **changes: Any) -> dict[str, Any]:
        """Change the one sales order with ``reference`` by hand (its ``status``, ``total``)."""
        with self.lock:
            (order,) = [o for o in self.salesorders.values() if o["reference_number"] == reference]
            order.update(changes)
            return dict(order)

    def delete_sales_order(self, reference: str) -> None:
        """Delete the sales orders with ``reference`` by hand."""
        with self.lock:
            for so_id in [
                k for k, o in self.salesorders.items() if o["reference_number"] == reference
            ]:
                del self.salesorders[so_id]

    def voided(self) -> list[dict[str, Any]]:
        """The sales orders voided so far."""
        with self.lock:
            return [dict(o) for o in self.salesorders.values() if o["status"] == "void"]

    def _new_id(self) -> str:
        return str(next(self._ids))


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json;charset=UTF-8",
    )


def _dribbled(response: Response, seconds: float) -> Response:
    """The same answer, its body sent a byte at a time over ``seconds`` (its length said
    up front, so the client waits for all of it)."""
    data = response.get_data()
    pause = seconds / max(1, len(data))

    def trickle():
        for index in range(len(data)):
            time.sleep(pause)
            yield data[index : index + 1]

    slow = Response(trickle(), status=response.status_code, headers=dict(response.headers))
    slow.headers["Content-Length"] = str(len(data))
    return slow


def _body() -> dict[str, Any]:
    """Zoho takes a JSON body, or the same JSON as the form field ``JSONString``."""
    if request.form.get("JSONString"):
        return json.loads(request.form["JSONString"])
    return request.get_json(silent=True) or {}


def _page(rows: list[dict[str, Any]], key: str) -> Response:
    page = max(1, int(request.args.get("page", 1)))
    per_page = max(1, min(200, int(request.args.get("per_page", 200))))
    chunk = rows[(page - 1) * per_page : page * per_page]
    context = {"page": page, "per_page": per_page, "has_more_page": page * per_page < len(rows)}
    return _answer(200, {"code": 0, "message": "success", key: chunk, "page_context": context})


def _summary(order: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "salesorder_id",
        "salesorder_number",
        "reference_number",
        "customer_id",
        "date",
        "status",
        "currency_code",
        "total",
    )
    return {k: order[k] for k in keys}
