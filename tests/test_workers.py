"""Workers as operators run them: real ``t2ctl serve`` processes sharing one database (each
test on SQLite and on PostgreSQL), killed, drained and scaled out."""

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from t2ctl import partners
from t2ctl.config import Settings
from t2ctl.db.models import Job, Order, SandboxSalesOrder
from t2ctl.security.crypto import SecretBox
from tests.conftest import LiveServer, order_body, write_config
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
    assert Job.get().state == "running"

    with serve(tmp_path, healthy, "--role", "worker") as second:
        wait_until(lambda: Order.get().status == "FULFILLED", timeout=40, what="FULFILLED")
        assert second.stop() == 0

    order = Order.get()
    (sales,) = SandboxSalesOrder.select()
    assert order.activation_reference == f"SBX-{sales.id:08d}", "the first sales order is reused"
    job = Job.get()
    assert (job.state, job.attempts) == ("done", 2)
    assert "lease expired" in job.last_error
    assert "job(s) from workers whose lease expired" in second.log


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
    assert Job.get().state == "done"
    assert "(0 job(s) released unfinished)" in worker.log


def test_sigterm_releases_what_cannot_finish_and_another_worker_takes_it(
    server: LiveServer, catalogue, tmp_path: Path
) -> None:
    stuck = config(
        server.settings,
        tmp_path / "stuck.toml",
        sandbox={"provision_delay": "60s"},
        worker={"shutdown_grace": "1s"},
    )
    healthy = config(server.settings, tmp_path / "healthy.toml")
    http = server.session(server.add_partner().key.api_key)
    with serve(tmp_path, stuck, "--role", "worker") as worker:
        http.post(server.endpoint("/fulfilment"), json=order_body("T2-R"))
        wait_until(lambda: sales_orders("T2-R") == 1, timeout=30, what="the sales order")
        assert worker.stop(timeout=15) == 0
    assert "(1 job(s) released unfinished)" in worker.log
    job = Job.get()
    assert (job.state, job.attempts, job.worker) == ("queued", 0, None)
    assert Order.get().status == "PROCESSING"

    with serve(tmp_path, healthy, "--role", "worker") as rescuer:
        wait_until(lambda: Order.get().status == "FULFILLED", timeout=30, what="FULFILLED")
        assert rescuer.stop() == 0
    assert sales_orders("T2-R") == 1
    assert Job.get().attempts == 1
