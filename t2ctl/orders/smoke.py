"""Test orders through the real partner API, as T2Mobile's portal would send them: the check
an operator runs after an install or an upgrade (``t2ctl orders submit --test``).

Orders go over HTTP to a running server, so the whole path is tried: authentication, intake,
a worker, provisioning and the outcome. Each is marked ``metadata.test``; in Zoho mode each is
a real sales order.
"""

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests

from t2ctl import clock, products
from t2ctl.db.models import Product
from t2ctl.errors import T2Error

SETTLED = ("FULFILLED", "FAILED", "CANCELLED")
CUSTOMER = {"id": "T2CTL-TEST", "name": "t2ctl Test", "email": "test-orders@example.com"}


@dataclass(frozen=True)
class Api:
    """The partner API of one server, called with one key."""

    url: str  # the server's base URL, without /t2mobile
    api_key: str
    timeout: float = 10

    def call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        try:
            return requests.request(
                method,
                f"{self.url.rstrip('/')}/t2mobile{path}",
                json=body,
                headers={"X-API-Key": self.api_key},
                timeout=self.timeout,
            )
        except requests.ConnectionError as exc:
            raise T2Error(
                f"no t2ctl serve answers at {self.url}; is it running? "
                "(start it with `t2ctl serve`, or name another with --url)"
            ) from exc
        except requests.Timeout as exc:
            raise T2Error(
                f"the partner API at {self.url} did not answer within {self.timeout:g} s"
            ) from exc
        except requests.RequestException as exc:  # a malformed --url, say
            raise T2Error(f"cannot call the partner API at {self.url}: {exc}") from exc


def bodies(product: Product, count: int) -> list[dict[str, Any]]:
    """``count`` one-unit orders of ``product`` at its price, under fresh orderIds."""
    stamp = f"TEST-{clock.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    return [
        {
            "orderId": f"{stamp}-{n}",
            "productId": product.product_id,
            "quantity": 1,
            "customer": CUSTOMER,
            "amount": products.price(product).public(),
            "metadata": {"test": True, "source": "t2ctl orders submit --test"},
        }
        for n in range(1, count + 1)
    ]


def send(api: Api, orders: list[dict[str, Any]]) -> None:
    """Submit each order; a refusal stops with the API's own explanation."""
    for body in orders:
        answer = api.call("POST", "/fulfilment", body)
        if answer.status_code not in (200, 202):
            raise T2Error(f"order {body['orderId']} was refused: {_problem(answer)}")


def follow(api: Api, order_ids: list[str], *, wait: timedelta) -> list[dict[str, Any]]:
    """Each order as the API shows it, once all are settled or ``wait`` has passed."""
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        shown = [_order(api, order_id) for order_id in order_ids]
        if all(o["status"] in SETTLED for o in shown) or time.monotonic() >= deadline:
            return shown
        time.sleep(0.5)


def _order(api: Api, order_id: str) -> dict[str, Any]:
    answer = api.call("GET", f"/orders/{order_id}")
    if answer.status_code != 200:
        raise T2Error(f"order {order_id} cannot be read back: {_problem(answer)}")
    return answer.json()


def _problem(answer: requests.Response) -> str:
    try:
        problem = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    errors = "; ".join(f"{e['field']}: {e['message']}" for e in problem.get("errors", []))
    return f"HTTP {answer.status_code} {problem.get('detail', '')}" + (
        f" ({errors})" if errors else ""
    )
