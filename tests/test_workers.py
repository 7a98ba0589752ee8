"""Workers as operators run them: real ``t2ctl serve`` processes sharing one database (each
test on SQLite and on PostgreSQL), killed, drained and scaled out."""

import re
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from t2ctl import clock, partners
from t2ctl.config import Settings
from t2ctl.db.models import Order, SandboxSalesOrder
from t2ctl.jobs.models import Job
from t2ctl.security.crypto import SecretBox
from tests.conftest import THROUGH_PGBOUNCER, LiveServer, order_body, order_job, write_config
from tests.processes import LISTENING, serve, wait_until

FULFILLED = re.compile(r"order (\S+) FULFILLED")


def config(settings: Settings, path: Path, **sections: dict) -> Path:
    extra = "".join(
        f"\n[{name}]\n" + "".join(f"{key} = {value!r}\n" for key, value in values.items())
        for name, values in sections.items()
    )
    return write_config(path, settings, extra.replace("'", '"'))


def sales_orders(order_id: str) -> int:
    return SandboxSalesOrder.select().where(SandboxSalesOrder.reference_number == order_id).count()


@THROUGH_PGBOUNCER
def test_a_worker_killed_mid_job_is_replaced_after_its_lease_with_one_sales_order(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    # The first worker creates the sales order, then stalls before recording the outcome: the
    # window in which a crash is most dangerous.
    stalling = config(
        server.settings,
        tmp_path / "stalling.toml",
        worker={"lease_seconds": 5},
        sandbox={"provision_delay": "60s"},
    )
    healthy = config(server.settings, tmp_path / "healthy.toml", worker={"lease_seconds": 5})
    http = server.session(server.add_partner().key.api_key)
    with serve(tmp_path, stalling, "--role", "worker") as first:
        assert http.post(server.endpoint("/fulfilment"), json=order_body("T2-K")).status_code == 202
        wait_until(lambda: sales_orders("T2-K") == 1, timeout=30, what="the first sales order")
        assert Order.get().status == "PROCESSING"
        first.kill()  # SIGKILL: no drain, no release, the lease is simply left to expire
    assert order_job().state == "running"

    with serve(tmp_path, healthy, "--role", "worker") as second:
        wait_until(lambda: Order.get().status == "FULFILLED", timeout=40, what="FULFILLED")
        assert second.stop() == 0

    order = Order.get()
    (sales,) = SandboxSalesOrder.select()
    assert order.activation_reference == f"SBX-{sales.id:08d}", "the first sales order is reused"
    job = order_job()
    assert (job.state, job.attempts) == ("done", 2)
    assert "lease expired" in job.last_error
    assert "job(s) from workers whose lease expired" in second.log


@THROUGH_PGBOUNCER
def test_two_workers_and_an_api_process_share_500_orders_exactly_once(
    migrated: Settings, catalogue, tmp_path: Path
) -> None:
    # A campaign burst: the partner is allowed it.
    settings_file = config(
        migrated, tmp_path / "config.toml", server={"rate_limit_per_minute": 1000}
    )
    box = SecretBox(migrated.security.master_keys)
    key = partners.add("t2mobile", "http://127.0.0.1:9/hook", box=box, sandbox=True).key.api_key
    with (
        serve(tmp_path, settings_file, "--role", "api", "--port", "0") as api,
        serve(tmp_path, settings_file, "--role", "worker") as worker_a,
        serve(tmp_path, settings_file, "--role", "worker") as worker_b,
    ):
        url = api.wait_for(LISTENING).group(1)
        http = requests.Session()
        http.headers["X-API-Key"] = key

        def post(n: int) -> int:
            body = order_body(f"T2-BULK-{n:04d}")
            return http.post(f"{url}/t2mobile/fulfilment", json=body, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert Counter(pool.map(post, range(500))) == {202: 500}
        wait_until(
            lambda: Order.select().where(Order.status == "FULFILLED").count() == 500,
            timeout=120,
            what="500 FULFILLED orders",
        )
        assert [daemon.stop() for daemon in (api, worker_a, worker_b)] == [0, 0, 0]

    by_a = FULFILLED.findall(worker_a.log)
    by_b = FULFILLED.findall(worker_b.log)
    assert by_a and by_b, "both workers took a share"
    assert sorted(by_a + by_b) == sorted(f"T2-BULK-{n:04d}" for n in range(500))
    assert not FULFILLED.search(api.log), "an api-role daemon runs no jobs"
    assert SandboxSalesOrder.select().count() == 500
    references = {row.reference_number for row in SandboxSalesOrder.select()}
    assert len(references) == 500
    jobs = Job.select().where(Job.task == "process_order")
    assert Counter((job.state, job.attempts) for job in jobs) == {("done", 1): 500}


def test_sigterm_lets_a_running_job_finish_within_the_grace(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    slowish = config(
        server.settings,
        tmp_path / "c.toml",
        sandbox={"provision_delay": "2s"},
        worker={"shutdown_grace": "20s"},
    )
    http = server.session(server.add_partner().key.api_key)
    with serve(tmp_path, slowish, "--role", "worker") as worker:
        http.post(server.endpoint("/fulfilment"), json=order_body("T2-D"))
        wait_until(lambda: sales_orders("T2-D") == 1, timeout=30, what="the sales order")
        assert worker.stop() == 0
    assert Order.get().status == "FULFILLED"
    assert order_job().state == "done"
    # The order's webhook job, taken by this worker with the outcome, was not started: it
    # goes back untried, for the next worker.
    assert "1 job(s) released untried, 0 interrupted" in worker.log
    webhook = Job.get(Job.task == "deliver")
    assert (webhook.state, webhook.attempts, webhook.worker) == ("queued", 0, None)


@THROUGH_PGBOUNCER
def test_sigterm_hands_back_what_cannot_finish_and_another_worker_takes_it(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    stuck = config(
        server.settings,
        tmp_path / "stuck.toml",
        sandbox={"provision_delay": "60s"},
        worker={"shutdown_grace": "1s", "lease_seconds": 5, "concurrency": 1},
    )
    healthy = config(server.settings, tmp_path / "healthy.toml")
    http = server.session(server.add_partner().key.api_key)
    with serve(tmp_path, stuck, "--role", "worker") as worker:
        for order_id in ("T2-R", "T2-WAITING"):
            http.post(server.endpoint("/fulfilment"), json=order_body(order_id))
        wait_until(lambda: sales_orders("T2-R") == 1, timeout=30, what="the sales order")
        wait_until(lambda: Job.select().where(Job.state == "running").count() == 2, timeout=10)
        assert worker.stop(timeout=15) == 0
    assert "1 job(s) released untried, 1 interrupted" in worker.log
    running, waiting = (
        Job.get(Job.payload == {"order": Order.get(Order.order_id == order_id).id})
        for order_id in ("T2-R", "T2-WAITING")
    )
    # The job that never started goes back at once, its attempt not counted; the one that
    # was cut short is retried after a lease, as if its worker had died.
    assert (waiting.state, waiting.attempts, waiting.worker) == ("queued", 0, None)
    assert (running.state, running.attempts) == ("queued", 1)
    assert running.last_error.startswith("interrupted: worker ")
    assert running.run_at > clock.now()
    assert Order.get(Order.order_id == "T2-R").status == "PROCESSING"

    with serve(tmp_path, healthy, "--role", "worker") as rescuer:
        wait_until(
            lambda: Order.select().where(Order.status == "FULFILLED").count() == 2,
            timeout=30,
            what="both FULFILLED",
        )
        assert rescuer.stop() == 0
    assert sales_orders("T2-R") == 1, "the interrupted order's sales order is reused"
    assert sales_orders("T2-WAITING") == 1


def test_a_second_sigterm_does_not_cut_the_drain_short(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    slowish = config(server.settings, tmp_path / "c.toml", sandbox={"provision_delay": "3s"})
    http = server.session(server.add_partner().key.api_key)
    with serve(tmp_path, slowish, "--role", "worker") as worker:
        http.post(server.endpoint("/fulfilment"), json=order_body("T2-2"))
        wait_until(lambda: sales_orders("T2-2") == 1, timeout=30, what="the sales order")
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for(re.compile("SIGTERM received: finishing work in flight"))
        assert worker.stop() == 0
    assert "SIGTERM received: already stopping" in worker.log
    assert Order.get().status == "FULFILLED"
