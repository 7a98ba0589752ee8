"""The OpenAPI document: valid 3.1, complete, and true to what the server does."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts, get_spec_version

from tests.conftest import LiveServer, order_body, unavailable
from tests.openapi_check import SPEC, assert_documented


def test_the_served_document_is_valid_openapi_3_1(server: LiveServer) -> None:
    response = requests.get(server.endpoint("/openapi.json"))
    assert response.status_code == 200
    document = response.json()
    assert get_spec_version(document) == consts.OPENAPIV31
    validate(document)
    assert document == SPEC  # what the tests check responses against is what is served


def test_every_route_the_app_serves_is_documented_with_its_methods(server: LiveServer) -> None:
    served = {}
    for rule in server.app.url_map.iter_rules():
        # Flask's static route, and the reference page's assets (Swagger UI's files, not API).
        if rule.endpoint in ("static", "meta.static"):
            continue
        template = re.sub(
            r"<(?:\w+:)?(\w+)>",
            lambda m: "{orderId}" if m[1] == "order_id" else "{" + m[1] + "}",
            rule.rule,
        )
        served[template] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    document = requests.get(server.endpoint("/openapi.json")).json()
    documented = {path: set(ops) for path, ops in document["paths"].items()}
    assert served == documented


def test_success_responses_match_their_schemas(server: LiveServer, catalogue) -> None:
    http = server.session(server.add_partner().key.api_key)
    assert_documented("GET", "/health", requests.get(server.endpoint("/health")))
    listing = http.get(server.endpoint("/products"))
    assert_documented("GET", "/products", listing)
    unchanged = http.get(
        server.endpoint("/products"), headers={"If-None-Match": listing.headers["ETag"]}
    )
    assert_documented("GET", "/products", unchanged)
    created = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert_documented("POST", "/fulfilment", created)
    replayed = http.post(server.endpoint("/fulfilment"), json=order_body())
    assert_documented("POST", "/fulfilment", replayed)
    assert_documented(
        "GET", "/orders/{orderId}", http.get(server.endpoint("/orders/T2-20261127-000123"))
    )
    assert {created.status_code, replayed.status_code, unchanged.status_code} == {202, 200, 304}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the HTTP server's, not the DB's
def test_the_probes_refuse_an_oversized_body_as_documented(server: LiveServer) -> None:
    """No probe reads a body, yet waitress refuses one announced over 1 MiB on any route."""
    for path in ("/health", "/health/live", "/health/ready", "/openapi.json"):
        refused = requests.get(server.endpoint(path), data=b"x" * (2 << 20))
        assert refused.status_code == 413, path
        assert_documented("GET", path, refused)


# Redocly CLI, pinned: .ci/run installs this version here, outside the work tree.
REDOCLY_VERSION = "2.77.0"
REDOCLY_HOME = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "t2ctl-ci"
    / f"redocly-{REDOCLY_VERSION}"
)
REDOCLY_CONFIG = Path(__file__).parent.parent / "redocly.yaml"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the document is the same on any
def test_the_served_document_passes_redocly_recommended_lint(
    server: LiveServer, tmp_path: Path
) -> None:
    """What client generators read: a schema keyword that is not JSON Schema (pydantic's
    ``ge``) is an error there, and a generated client would silently lose the bound."""
    redocly = REDOCLY_HOME / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        unavailable(
            f"Redocly CLI is not installed at {redocly}: `npm install --prefix {REDOCLY_HOME} "
            f"@redocly/cli@{REDOCLY_VERSION}` (.ci/run does)"
        )
    served = tmp_path / "openapi.json"
    served.write_bytes(requests.get(server.endpoint("/openapi.json")).content)
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    ran = subprocess.run(
        [redocly, "lint", "--config", REDOCLY_CONFIG, "--format=json", served],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ran.stdout, ran.stderr
    report = json.loads(ran.stdout)
    assert report["version"] == REDOCLY_VERSION
    findings = [
        f"{p['severity']} {p['ruleId']}: {p['message']} at "
        + ", ".join(where["pointer"] for where in p["location"])
        for p in report["problems"]
    ]
    assert findings == [], "\n".join(findings)
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}
    assert ran.returncode == 0, ran.stderr
