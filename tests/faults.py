"""The fault matrix's pieces: a partner that submits over HTTP and retries as a partner
would, a fleet of ``t2ctl serve`` processes killed and restarted as systemd would, and the
promise checked afterwards from the database, the Zoho stand-in and the receiver."""

import contextlib
import itertools
import json
import random
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from t2ctl import clock, db, partners, products
from t2ctl.config import Settings
from t2ctl.db import schema
from t2ctl.db.models import Order, WebhookDelivery
from t2ctl.jobs import admin
from t2ctl.sandbox.zoho import ZohoStandIn
from t2ctl.security.crypto import SecretBox
from tests.conftest import CATALOGUE, ZohoEnv, order_body, write_config, zoho_standin
from tests.hooks import Hook
from tests.processes import LISTENING, WORKER_STARTED, Daemon, serve, wait_until

# Orders for this product fail for good: the tests take its item out of the Zoho stand-in.
DECLINED = "NORTON-1Y"
DECLINED_PRICE = "9999.99"
CONFIRM = r"/salesorders/\d+/status/confirmed"
UNAVAILABLE = "urn:t2ctl:problem:unavailable"  # the problem type of a 503


def fault_config(zoho: ZohoEnv, ca_file: Path) -> str:
    """Short leases, timeouts and retries, so a run settles in seconds; Zoho's budget and the
    stand-in's limit compressed alike to a second."""
    return (
        zoho.config_toml(requests_per_minute=80, rate_period="1s", timeout_seconds=2)
        + "\n[server]\nrate_limit_per_minute = 100000\n"
        + "\n[worker]\nlease_seconds = 5\nconcurrency = 4\n"
        + '\n[webhooks]\nallow_private_networks = ["127.0.0.0/8"]\n'
        + f'ca_file = "{ca_file}"\n'
        + 'retry_schedule = ["1s", "2s", "3s", "5s", "5s", "5s", "5s", "5s", "5s", "5s"]\n'
    )


def faulty_zoho(zoho: ZohoEnv) -> None:
    """Every call a little late; the declined product's item gone from Zoho."""
    zoho.standin.latency = 0.01
    with zoho.standin.lock:
        for item_id, item in list(zoho.standin.items.items()):
            if item["sku"] == DECLINED:
                del zoho.standin.items[item_id]


def partner_key(zoho: ZohoEnv, webhook_url: str) -> str:
    """T2Mobile, with its webhooks to ``webhook_url`` and a limit no run reaches: its API key."""
    box = SecretBox(zoho.settings.security.master_keys)
    key = partners.add("t2mobile", webhook_url, box=box, sandbox=False).key.api_key
    partners.update("t2mobile", sandbox=False, rate_limit="100000/minute")
    return key


@contextlib.contextmanager
def zoho_fleet(base: Settings, ca_file: Path, path: Path) -> Iterator[tuple[ZohoEnv, Path]]:
    """For a database of a test's own (``base``): migrated, with the catalogue; the Zoho
    stand-in as ``faulty_zoho`` leaves it; and the fault matrix's config file at ``path``."""
    db.connect(base.database.url)
    schema.migrate()
    products.upsert(CATALOGUE)
    with zoho_standin(base, CATALOGUE) as zoho:
        faulty_zoho(zoho)
        yield zoho, write_config(path, zoho.settings, fault_config(zoho, ca_file))


def free_port() -> int:
    """A port free now, for a daemon restarted on the same address (as behind a balancer)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def order(n: int, prefix: str) -> dict:
    """The ``n``th order of a run: twenty customers come back, every tenth order is for the
    product Zoho does not sell."""
    customer = {
        "id": f"CUST-{n % 20}",
        "name": f"Customer {n % 20}",
        "email": f"customer{n % 20}@example.ng",
    }
    if n % 10 == 9:
        return order_body(
            f"{prefix}-{n:05d}",
            productId=DECLINED,
            amount={"value": DECLINED_PRICE, "currency": "NGN"},
            customer=customer,
        )
    return order_body(f"{prefix}-{n:05d}", customer=customer)


def expected_status(order_id: str) -> str:
    return "FAILED" if int(order_id.rsplit("-", 1)[1]) % 10 == 9 else "FULFILLED"


@dataclass(frozen=True)
class Attempt:
    """One POST as the partner saw it: when it started and ended (monotonic seconds), its
    status (or the error), and the problem type of an error answer."""

    started: float
    ended: float
    status: int | str
    problem: str | None = None


class Partner:
    """T2Mobile's client: each order posted until it gets a 2xx, through whichever API
    address answers, retrying connection errors and 503s with the same orderId."""

    def __init__(self, urls: list[str], api_key: str, *, give_up_after: float = 120):
        self.urls = urls
        self.api_key = api_key
        self.give_up_after = give_up_after
        self.accepted: set[str] = set()
        self.statuses: Counter[int | str] = Counter()
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self._local = threading.local()
        self._turns = itertools.count()  # orders take the addresses in turn, as a balancer

    def _session(self) -> requests.Session:
        if getattr(self._local, "http", None) is None:
            self._local.http = requests.Session()
            self._local.http.headers["X-API-Key"] = self.api_key
        return self._local.http

    def submit(self, body: dict) -> int | str:
        """Post until accepted; the last status (or error name) seen."""
        deadline = time.monotonic() + self.give_up_after
        turn = next(self._turns)
        for attempt in itertools.count():
            url = self.urls[(turn + attempt) % len(self.urls)]
            started = time.monotonic()
            problem = None
            try:
                answer = self._session().post(f"{url}/t2mobile/fulfilment", json=body, timeout=60)
                got: int | str = answer.status_code
                if answer.headers.get("Content-Type") == "application/problem+json":
                    problem = answer.json()["type"]
            except requests.ConnectionError:
                got = "connection error"
                self._local.http = None  # a fresh connection, as a client would
            with self.lock:
                self.statuses[got] += 1
                self.attempts.append(Attempt(started, time.monotonic(), got, problem))
            if isinstance(got, int) and 200 <= got < 300:
                with self.lock:
                    self.accepted.add(body["orderId"])
                return got
            if got not in ("connection error", 503) or time.monotonic() > deadline:
                return got
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")

    def keep_submitting(
        self, bodies: Iterator[dict], stop: threading.Event, *, clients: int = 4, pause: float = 0
    ) -> list[threading.Thread]:
        """``clients`` threads posting the next order of ``bodies`` each, ``pause`` seconds
        apart, until ``stop`` is set; join them to end the load."""
        lock = threading.Lock()

        def run() -> None:
            while not stop.is_set():
                with lock:
                    body = next(bodies)
                self.submit(body)
                time.sleep(pause)

        threads = [threading.Thread(target=run) for _ in range(clients)]
        for thread in threads:
            thread.start()
        return threads

    def submit_all(self, bodies: Iterable[dict], *, clients: int = 8, pause: float = 0) -> Counter:
        """Each client posts its share, waiting ``pause`` seconds after each order."""

        def one(body: dict) -> int | str:
            got = self.submit(body)
            time.sleep(pause)
            return got

        with ThreadPoolExecutor(max_workers=clients) as pool:
            return Counter(pool.map(one, bodies))


@dataclass
class Fleet:
    """API and worker processes on one database; a killed one is restarted at once, the API
    on its own port, as systemd restarts a unit behind a balancer."""

    cwd: Path
    config: Path
    api_ports: list[int]
    workers: int
    kills: Counter = field(default_factory=Counter)
    daemons: dict[str, Daemon] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    def start(self) -> None:
        """Every daemon at once, as a host boots; back once all are ready."""
        names = [f"api-{n}" for n in range(len(self.api_ports))]
        names += [f"worker-{n}" for n in range(self.workers)]
        for name in names:
            self.daemons[name] = Daemon(self.cwd, "--config", str(self.config), *self._args(name))
        for name in names:
            self.daemons[name].wait_for(LISTENING if name.startswith("api") else WORKER_STARTED)

    def _args(self, name: str) -> tuple[str, ...]:
        if name.startswith("api"):
            port = self.api_ports[int(name.split("-")[1])]
            return ("serve", "--role", "api", "--port", str(port))
        return ("serve", "--role", "worker")

    def _start(self, name: str) -> None:
        self.daemons[name] = serve(self.cwd, self.config, *self._args(name)[1:])

    def kill(self, name: str) -> None:
        """SIGKILL, then the restart systemd would make."""
        daemon = self.daemons.pop(name)
        daemon.kill()
        self.logs.append(daemon.log)
        self.kills[name.split("-")[0]] += 1
        self._start(name)

    def stop(self) -> list[int]:
        codes = [daemon.stop() for daemon in self.daemons.values()]
        self.logs.extend(daemon.log for daemon in self.daemons.values())
        return codes

    def complaints(self) -> Counter[str]:
        """Warnings and errors of every daemon that ran, by logger and message, ids cut."""
        found: Counter[str] = Counter()
        for log in self.logs:
            for line in log.splitlines():
                record = json.loads(line)
                if record["level"] in ("warning", "error", "critical"):
                    message = re.sub(r"\d+", "N", record["message"])[:120]
                    found[f"{record['level']} {record['logger']}: {message}"] += 1
        return found

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *_exc) -> None:
        for daemon in self.daemons.values():
            if daemon.proc.poll() is None:
                daemon.kill()


def killing(fleet: Fleet, rng: random.Random, *, kills: int, every: float) -> Callable[[], None]:
    """A loop that SIGKILLs a daemon of the fleet every ``every`` seconds or so, ``kills``
    times: a worker, then an api process, and so on, each picked at random from its role."""

    def run() -> None:
        for index in range(kills):
            time.sleep(rng.uniform(0.5, 1.5) * every)
            role = ("worker", "api")[index % 2]
            fleet.kill(rng.choice(sorted(n for n in fleet.daemons if n.startswith(role))))

    return run


# What the Zoho stand-in does to a call now and then: each is transient.
ZOHO_FAULTS: list[Callable[[ZohoStandIn, str, str], None]] = [
    lambda s, m, p: s.fail(m, p, status=429, headers={"Retry-After": "1"}),
    lambda s, m, p: s.fail(m, p, status=500),
    lambda s, m, p: s.fail(m, p, status=502, body={"html": "bad gateway"}),
    lambda s, m, p: s.fail(m, p, status=503, headers={"Retry-After": "1"}),
    lambda s, m, p: s.reset(m, p),
    lambda s, m, p: s.stall(m, p, 2.5),  # past the 2 s timeout the tests give t2ctl
    lambda s, m, p: s.dribble(m, p, 1.0),
]
# The routes every order calls, most of all the two each one calls.
ZOHO_ROUTES = [
    ("POST", "/salesorders"),
    ("POST", "/salesorders"),
    ("POST", CONFIRM),
    ("POST", CONFIRM),
    ("GET", "/contacts"),
    ("POST", "/contacts"),
]


def troubling(
    standin: ZohoStandIn, rng: random.Random, stop: threading.Event, *, every: float
) -> Callable[[], None]:
    """A loop that sets one random fault on a random route every ``every`` seconds or so,
    until ``stop``; then the faults not met yet are dropped, or they would all fall on the
    last few orders still retrying."""

    def run() -> None:
        while not stop.wait(rng.uniform(0.5, 1.5) * every):
            method, path = rng.choice(ZOHO_ROUTES)
            rng.choice(ZOHO_FAULTS)(standin, method, path)
        standin.calm()

    return run


@dataclass(frozen=True)
class Outcome:
    """The promise, counted: what an operator would check after the storm."""

    statuses: Counter
    lost: list[str]  # accepted, but no order in the database
    unexpected: list[str]  # FULFILLED/FAILED other than the faults dictate
    sales_orders: dict[str, int]  # by reference_number, over the accepted orders
    webhook_ids: dict[str, set[str]]  # distinct webhook-ids received for each order
    undelivered: int  # webhook deliveries pending or dead

    @property
    def duplicates(self) -> int:
        extra_sales = sum(max(0, n - 1) for n in self.sales_orders.values())
        extra_events = sum(max(0, len(ids) - 1) for ids in self.webhook_ids.values())
        return extra_sales + extra_events


def settled(accepted: set[str]) -> bool:
    """Every accepted order final, and no job queued, running or dead."""
    final = Order.select().where(
        Order.order_id.in_(list(accepted)) & Order.status.in_(["FULFILLED", "FAILED"])
    )
    counts = admin.stats(now=clock.now()).counts
    return final.count() == len(accepted) and counts["queued"] == counts["running"] == 0


def zoho_sales(standin: ZohoStandIn) -> Counter[str]:
    """The stand-in's sales orders, counted by reference_number (our orderId)."""
    with standin.lock:
        return Counter(s["reference_number"] for s in standin.salesorders.values())


def outcome(accepted: set[str], references: Counter[str], hook: Hook) -> Outcome:
    orders = {o.order_id: o for o in Order.select().where(Order.order_id.in_(list(accepted)))}
    events: dict[str, set[str]] = defaultdict(set)
    for received in list(hook.received):
        body = json.loads(received.body)
        if body["type"] in ("order.fulfilled", "order.failed"):
            events[body["data"]["orderId"]].add(received.webhook_id)
    return Outcome(
        statuses=Counter(o.status for o in orders.values()),
        lost=sorted(accepted - orders.keys()),
        unexpected=sorted(i for i, o in orders.items() if o.status != expected_status(i)),
        sales_orders={i: references[i] for i in accepted},
        webhook_ids={i: events[i] for i in accepted},
        undelivered=WebhookDelivery.select().where(WebhookDelivery.status != "delivered").count(),
    )


def assert_promise(accepted: set[str], references: Counter[str], hook: Hook) -> Outcome:
    """Each accepted order FULFILLED (or FAILED if its product is the declined one), with
    exactly one sales order (none if FAILED) and one event, under one webhook-id; no job
    stuck or dead."""
    found = outcome(accepted, references, hook)
    assert found.lost == [], f"accepted orders lost: {found.lost}"
    assert found.unexpected == [], f"orders not ended as the faults dictate: {found.unexpected}"
    wrong = {
        i: n
        for i, n in found.sales_orders.items()
        if n != (1 if expected_status(i) == "FULFILLED" else 0)
    }
    assert wrong == {}, f"sales orders per order, where not as expected: {wrong}"
    events = {i: ids for i, ids in found.webhook_ids.items() if len(ids) != 1}
    assert events == {}, f"orders without exactly one order event (webhook-id): {events}"
    assert found.undelivered == 0
    counts = admin.stats(now=clock.now()).counts
    assert (counts["queued"], counts["running"], counts["dead"]) == (0, 0, 0), counts
    return found


@dataclass(frozen=True)
class Window:
    """What the partner saw of an outage from ``down`` to ``up`` (monotonic seconds)."""

    down: float
    up: float
    attempts: list[Attempt]

    @property
    def during(self) -> list[Attempt]:
        """Attempts in flight at some moment while the database was away."""
        return [a for a in self.attempts if a.started < self.up and a.ended > self.down]

    @property
    def after(self) -> list[Attempt]:
        """Attempts made once it was back."""
        return [a for a in self.attempts if a.started >= self.up]

    def first_accepted_after(self) -> float | None:
        """Seconds from the database's return to the end of the first 2xx."""
        ends = [a.ended for a in self.after if isinstance(a.status, int) and a.status < 300]
        return min(ends) - self.up if ends else None


def through_an_outage(
    fleet: Fleet, partner: Partner, prefix: str, outage: Callable[[], None]
) -> Window:
    """Orders from 4 clients before, during and after ``outage()``, which returns once the
    database is back: 40 accepted before it, 80 after; then every order settled and the
    fleet stopped cleanly. What the partner saw of it."""
    stop = threading.Event()
    bodies = (order(n, prefix) for n in itertools.count())
    load = partner.keep_submitting(bodies, stop, clients=4, pause=0.05)
    wait_until(lambda: len(partner.accepted) >= 40, timeout=30, what="40 orders accepted")
    down = time.monotonic()
    outage()
    up = time.monotonic()
    wait_until(lambda: len(partner.accepted) >= 40 + 80, timeout=60, what="80 more orders")
    stop.set()
    for thread in load:
        thread.join()
    wait_until(lambda: settled(partner.accepted), timeout=60, what="every order settled")
    assert fleet.stop() == [0, 0]
    return Window(down, up, list(partner.attempts))


def assert_outage_held(window: Window, partner: Partner, fleet: Fleet, told: str) -> float:
    """Meanwhile the API answered 503 ``unavailable`` (or accepted before the outage bit),
    never a 500, and logged ``told`` once for each 503; the first requests after it succeed.
    The slowest answer meanwhile, in seconds."""
    during = window.during
    assert during, "orders came in while the database was away"
    assert {a.status for a in during} <= {503, 200, 202}
    assert 503 in {a.status for a in during}
    assert {a.problem for a in during if a.status == 503} == {UNAVAILABLE}
    assert all(a.status in (200, 202) for a in window.after), "the first requests succeed"
    assert 500 not in partner.statuses
    # The operator is told why, the partner not.
    complaints = fleet.complaints()
    assert sum(n for c, n in complaints.items() if c.startswith(told)) == partner.statuses[503]
    return max(a.ended - a.started for a in during)
