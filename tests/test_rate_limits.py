"""The rate limit across a fleet: two real daemons sharing one count per key in Redis, each
counting alone with ``memory://``, and requests still served while Redis is unreachable.

Redis runs on 127.0.0.1:6379 (``.ci/run`` starts it). Under CI (``CI=true``) a test that cannot
reach it, or cannot start ``redis-server``, fails; elsewhere it skips and says why. Each test
limits a fresh API key (a random id) and deletes that key's counts afterwards.
"""

import os
import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from t2ctl import partners
from t2ctl.config import Settings
from t2ctl.security.crypto import SecretBox
from tests.conftest import IN_CI, at_once, write_config
from tests.processes import LISTENING, Daemon, run, wait_until
from tests.test_operations import METRICS, sample, scrape

SHARED = "redis://127.0.0.1:6379/0"
LIMIT = 10
STORAGE_LOG = re.compile(r"rate limits counted in .*")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(
        SHARED, socket_connect_timeout=2, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {SHARED} is unreachable: {exc}")
    try:
        yield client
    finally:
        client.close()


def limited_key(settings: Settings, per_minute: int = LIMIT) -> tuple[str, str]:
    """A new partner allowed ``per_minute``: its API key and the key's id."""
    box = SecretBox(settings.security.master_keys)
    new = partners.add("t2mobile", "http://127.0.0.1:9/hook", box=box, sandbox=True)
    partners.update("t2mobile", sandbox=True, rate_limit=f"{per_minute}/minute")
    return new.key.api_key, new.key.key_id


def forget(client: redis.Redis, key_id: str) -> int:
    """Delete the counts kept in Redis for ``key_id``; how many keys there were."""
    found = list(client.scan_iter(match=f"*{key_id}*"))
    return client.delete(*found) if found else 0


def counting_in(tmp_path: Path, settings: Settings, storage: str) -> Path:
    """A config file for ``settings`` whose rate limits are counted in ``storage``."""
    extra = f'\n[server]\nrate_limit_storage = "{storage}"\n'
    return write_config(tmp_path / "config.toml", settings, extra)


def daemons(tmp_path: Path, config: Path, count: int) -> list[Daemon]:
    """``count`` API daemons on one config, started together; each waited for."""
    started = [
        Daemon(tmp_path, "--config", str(config), "serve", "--role", "api", "--port", "0")
        for _ in range(count)
    ]
    for daemon in started:
        daemon.wait_for(STORAGE_LOG)
    return started


def url(daemon: Daemon) -> str:
    return daemon.wait_for(LISTENING).group(1)


def burst(urls: list[str], api_key: str, requests_each: int) -> list[requests.Response]:
    """``requests_each`` GET /products to every daemon, taking turns."""
    http = requests.Session()
    http.headers["X-API-Key"] = api_key
    return [
        http.get(f"{base}/t2mobile/products", timeout=10)
        for _ in range(requests_each)
        for base in urls
    ]


def test_two_daemons_sharing_redis_let_a_key_through_exactly_its_limit(
    migrated: Settings, shared_redis: redis.Redis, tmp_path: Path
) -> None:
    api_key, key_id = limited_key(migrated)
    config = counting_in(tmp_path, migrated, SHARED)
    first, second = daemons(tmp_path, config, 2)
    try:
        with first, second:
            urls = [url(first), url(second)]
            answers = burst(urls, api_key, LIMIT + 1)
            assert "counted in redis://127.0.0.1:6379/0, shared by every daemon" in first.log
            assert list(shared_redis.scan_iter(match=f"*{key_id}*")), "the count is in Redis"
    finally:
        forget(shared_redis, key_id)
    statuses = [r.status_code for r in answers]
    assert Counter(statuses) == {200: LIMIT, 429: LIMIT + 2}, statuses
    assert statuses[:LIMIT] == [200] * LIMIT
    refused = answers[LIMIT:]
    assert {r.url.split("/t2mobile")[0] for r in refused} == set(urls), "429s from both"
    for response in refused:
        assert response.headers["Content-Type"] == "application/problem+json"
        assert 0 < int(response.headers["Retry-After"]) <= 60


def test_two_daemons_in_memory_each_let_a_key_through_its_whole_limit(
    migrated: Settings, tmp_path: Path
) -> None:
    """The same traffic as above without Redis: twice the key's limit gets through."""
    api_key, _ = limited_key(migrated)
    config = write_config(tmp_path / "config.toml", migrated)
    first, second = daemons(tmp_path, config, 2)
    with first, second:
        urls = [url(first), url(second)]
        answers = burst(urls, api_key, LIMIT + 1)
        assert "counted in this process's memory (memory://): each daemon counts alone" in (
            first.log
        )
    by_daemon = Counter((r.url.split("/t2mobile")[0], r.status_code) for r in answers)
    assert by_daemon == {
        (urls[0], 200): LIMIT,
        (urls[0], 429): 1,
        (urls[1], 200): LIMIT,
        (urls[1], 429): 1,
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a Redis that hangs."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        yield hole.getsockname()[1]


def timed(http: requests.Session, base: str) -> tuple[int, float]:
    """One GET /products: its status and how long it took, in seconds."""
    started = time.monotonic()
    status = http.get(f"{base}/t2mobile/products", timeout=30).status_code
    return status, time.monotonic() - started


def keyed(api_key: str) -> requests.Session:
    http = requests.Session()
    http.headers["X-API-Key"] = api_key
    return http


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # Redis is the point, not the DB
def test_a_redis_that_never_answers_costs_a_bounded_wait_and_no_error(
    migrated: Settings, tmp_path: Path, silent_port: int
) -> None:
    """Each key is still limited, by each daemon alone: 5 a minute here."""
    api_key, _ = limited_key(migrated, per_minute=5)
    config = counting_in(tmp_path, migrated, f"redis://127.0.0.1:{silent_port}/0")
    (daemon,) = daemons(tmp_path, config, 1)
    with daemon:
        base, metrics = url(daemon), daemon.wait_for(METRICS).group(1)
        http = keyed(api_key)
        answers = [timed(http, base) for _ in range(8)]
        time.sleep(1.1)  # past the first retry of the storage: one more wait
        answers += [timed(http, base) for _ in range(2)]
        got = scrape(metrics)
    assert [status for status, _ in answers] == [200] * 5 + [429] * 5
    assert max(seconds for _, seconds in answers) < 3, answers
    assert len(daemon.messages(action="rate_limit_storage_down")) == 1
    assert not [r for r in daemon.records if r["level"] in ("error", "critical")]
    assert sample(got, "t2ctl_rate_limit_storage_up") == 0
    assert sample(got, "t2ctl_rate_limit_fallback_requests_total") == len(answers)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # Redis is the point, not the DB
def test_requests_waiting_on_redis_when_it_hangs_are_all_served(
    migrated: Settings, tmp_path: Path, silent_port: int
) -> None:
    """Every API thread is waiting on Redis when it times out: each is counted in memory,
    one logs the switch, none fails."""
    api_key, _ = limited_key(migrated, per_minute=1000)
    config = counting_in(tmp_path, migrated, f"redis://127.0.0.1:{silent_port}/0")
    (daemon,) = daemons(tmp_path, config, 1)
    with daemon:
        base = url(daemon)
        answers = at_once(2 * migrated.server.threads, lambda: timed(keyed(api_key), base))
    assert Counter(status for status, _ in answers) == {200: 2 * migrated.server.threads}
    assert max(seconds for _, seconds in answers) < 3, answers
    assert len(daemon.messages(action="rate_limit_storage_down")) == 1


class RedisServer:
    """A ``redis-server`` of the test's own, with a password, to stop and start again."""

    PASSWORD = "rl-s3cret-pw"

    def __init__(self, directory: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.client = redis.Redis(
            port=self.port,
            password=self.PASSWORD,
            socket_connect_timeout=2,
            socket_timeout=2,
            retry=Retry(NoBackoff(), 0),  # redis-py's default retries for seconds when down
        )

    @property
    def uri(self) -> str:
        return f"redis://:{self.PASSWORD}@127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        subprocess.run(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "yes"),
                *("--requirepass", self.PASSWORD, "--dir", str(self.directory)),
                *("--logfile", str(self.directory / "redis.log")),
            ],
            check=True,
            timeout=10,
        )
        wait_until(self.answers, timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.answers():
            self.client.shutdown(nosave=True)
        wait_until(lambda: not self.answers(), timeout=10, what="redis-server to stop")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.client.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # Redis is the point, not the DB
def test_when_redis_stops_requests_are_served_and_the_shared_count_resumes_when_it_returns(
    migrated: Settings, tmp_path: Path, own_redis: RedisServer
) -> None:
    api_key, key_id = limited_key(migrated, per_minute=1000)
    config = counting_in(tmp_path, migrated, own_redis.uri)
    (daemon,) = daemons(tmp_path, config, 1)
    counted = f"*{key_id}*"
    with daemon:
        base, metrics = url(daemon), daemon.wait_for(METRICS).group(1)
        http = keyed(api_key)
        assert timed(http, base)[0] == 200
        assert list(own_redis.client.scan_iter(match=counted)), "counted in Redis"

        own_redis.stop()
        down = [timed(http, base) for _ in range(5)]
        while_down = scrape(metrics)

        own_redis.start()  # empty: its counts start again

        def resumed() -> bool:
            assert timed(http, base)[0] == 200
            return bool(daemon.messages(action="rate_limit_storage_up"))

        wait_until(resumed, timeout=40, what="the daemon to use Redis again")
        assert timed(http, base)[0] == 200
        assert list(own_redis.client.scan_iter(match=counted)), "counted in Redis again"
        back = scrape(metrics)
    assert [status for status, _ in down] == [200] * 5
    assert max(seconds for _, seconds in down) < 3, down
    assert len(daemon.messages(action="rate_limit_storage_down")) == 1
    assert sample(while_down, "t2ctl_rate_limit_storage_up") == 0
    assert sample(while_down, "t2ctl_rate_limit_fallback_requests_total") == 5
    assert sample(back, "t2ctl_rate_limit_storage_up") == 1
    assert not [r for r in daemon.records if r["level"] in ("error", "critical")]
    assert own_redis.PASSWORD not in daemon.log
    assert f"redis://:********@127.0.0.1:{own_redis.port}/0" in daemon.log


def test_serve_refuses_a_bad_storage_naming_the_key_and_not_the_password(tmp_path: Path) -> None:
    bad = "redis://:hunter2@cache.internal:6379/zero"
    result = run(tmp_path, "serve", env={**os.environ, "T2CTL_SERVER__RATE_LIMIT_STORAGE": bad})
    assert result.returncode == 1
    assert (
        "server.rate_limit_storage: the database in the redis:// URI must be a number, as in /0"
        " (from T2CTL_SERVER__RATE_LIMIT_STORAGE)" in result.stderr
    )
    assert "hunter2" not in result.stderr + result.stdout
