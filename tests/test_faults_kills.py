"""The fault matrix, SIGKILL: api and worker processes killed at random moments (seeded; the
seed is printed) while a partner submits orders and Zoho answers slowly and now and then
badly; each killed process is restarted as systemd would. Afterwards every accepted order
ended as the faults dictate, with one sales order and one order event, and no job is stuck
(each test on SQLite and on PostgreSQL).

The default run is short; ``pytest -m chaos`` runs the long one, sized by T2_CHAOS_ORDERS
and T2_CHAOS_KILLS; T2_CHAOS_SEED replays a run."""

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ZohoEnv, write_config
from tests.faults import (
    Fleet,
    Partner,
    assert_promise,
    fault_config,
    faulty_zoho,
    free_port,
    killing,
    order,
    partner_key,
    settled,
    troubling,
    zoho_sales,
)
from tests.hooks import Hook
from tests.processes import wait_until

VARIANTS = {
    # orders, kills
    "short": (120, 5),
    "long": (
        int(os.environ.get("T2_CHAOS_ORDERS", "1000")),
        int(os.environ.get("T2_CHAOS_KILLS", "40")),
    ),
}


@pytest.mark.parametrize("variant", ["short", pytest.param("long", marks=pytest.mark.chaos)])
def test_sigkills_at_random_moments_lose_nothing_and_duplicate_nothing(
    zoho: ZohoEnv, tls_hook: tuple[Hook, Path], tmp_path: Path, variant: str
) -> None:
    count, kills = VARIANTS[variant]
    seed = int(os.environ.get("T2_CHAOS_SEED") or random.randrange(10**6))
    print(f"chaos seed {seed}: replay with T2_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    hook, ca_file = tls_hook
    faulty_zoho(zoho)
    config = write_config(tmp_path / "config.toml", zoho.settings, fault_config(zoho, ca_file))
    key = partner_key(zoho, hook.url)
    started = time.monotonic()
    every = 1.0
    with Fleet(tmp_path, config, [free_port(), free_port()], workers=2) as fleet:
        fleet.start()
        partner = Partner(fleet.urls, key)
        stop_faults = threading.Event()
        threads = [
            threading.Thread(target=killing(fleet, rng, kills=kills, every=every)),
            threading.Thread(target=troubling(zoho.standin, rng, stop_faults, every=0.8)),
        ]
        for thread in threads:
            thread.start()
        # Spread over the kills, so that api processes die while orders come in.
        clients = 8
        pause = clients * kills * (every + 1.5) / count
        answers = partner.submit_all((order(n, "T2-CHAOS") for n in range(count)), pause=pause)
        threads[0].join()
        stop_faults.set()
        threads[1].join()
        wait_until(
            lambda: settled(partner.accepted), timeout=120 + count / 4, what="every order settled"
        )
        assert fleet.stop() == [0] * len(fleet.daemons)
    seconds = time.monotonic() - started

    assert set(answers) <= {200, 202}, f"orders a partner could not place: {answers}"
    assert len(partner.accepted) == count
    assert 500 not in partner.statuses, partner.statuses
    assert not [c for c in fleet.complaints() if c.startswith("error t2ctl.api")]
    found = assert_promise(partner.accepted, zoho_sales(zoho.standin), hook)
    assert found.duplicates == 0
    print(
        f"chaos figures: seed {seed}, {count} orders accepted, kills {dict(fleet.kills)}, "
        f"{seconds:.0f} s, {dict(found.statuses)}, lost {len(found.lost)}, duplicates "
        f"{found.duplicates}, partner saw {dict(partner.statuses)}, zoho answered "
        f"{dict(sorted(Counter(zoho.standin.statuses()).items()))}"
    )
