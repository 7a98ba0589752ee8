"""The API reference page (``/t2mobile/docs``) in a real browser: Debian's chromium, driven by
Playwright, against a real server. It lists what the served document says, loads nothing from
another origin, and its Try it out submits a real order with a real key.

Under CI (``CI=true``) a missing chromium or Playwright fails these tests; elsewhere it skips
them. Playwright's own browser download is never used: the machine's chromium is.
"""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LiveServer, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# The page reads no database of its own: one backend is enough (the other tests of the
# API run on both).
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

VIEWPORT = {"width": 1280, "height": 900}  # the size of docs/images/api-reference.png


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """One headless chromium for the module: launching it is most of a test's time."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: the API reference page is not tested")
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed: the API reference page is not tested")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$T2_ARTIFACTS`` when set (``.ci/run`` sets ``./artifacts``),
    else the test's tmp."""
    directory = Path(os.environ.get("T2_ARTIFACTS") or tmp_path / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def opened(browser: "Browser", server: LiveServer, requested: list[str]) -> "Page":
    """The reference page, rendered: every operation and webhook of the document on it.
    Every URL the page requests is appended to ``requested``."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.endpoint("/docs"))
    page.locator(".webhooks .opblock").first.wait_for()
    page.wait_for_load_state("networkidle")
    return page


def screenshot(page: "Page", artifacts: Path, name: str) -> None:
    path = artifacts / name
    page.screenshot(path=path)
    print(f"screenshot: {path}")


def listed(page: "Page") -> set[tuple[str, str, bool]]:
    """(method, path or event, is a webhook) of each operation the page shows."""
    shown = page.eval_on_selector_all(
        ".opblock",
        """blocks => blocks.map(block => [
            block.querySelector('.opblock-summary-method').innerText,
            block.querySelector('.opblock-summary-path').innerText,
            block.closest('.webhooks') !== null,
        ])""",
    )
    return {(method.lower(), path.strip(), webhook) for method, path, webhook in shown}


def test_the_page_lists_every_route_and_event_and_loads_only_our_own_urls(
    browser: "Browser", server: LiveServer, artifacts: Path
) -> None:
    requested: list[str] = []
    page = opened(browser, server, requested)
    screenshot(page, artifacts, "api-reference.png")

    document = requests.get(server.endpoint("/openapi.json")).json()
    routes = {(m, path, False) for path, ops in document["paths"].items() for m in ops}
    events = {(m, event, True) for event, ops in document["webhooks"].items() for m in ops}
    assert {event for _, event, _ in events} >= {"order.fulfilled", "subscription.expired"}
    assert listed(page) == routes | events

    # The viewer's own files and the document, and nothing from a CDN or anywhere else.
    ours = urlsplit(server.url).netloc
    assert {urlsplit(url).netloc for url in requested} == {ours}, requested
    paths = {urlsplit(url).path for url in requested}
    assert {"/t2mobile/docs/swagger-ui-bundle.js", "/t2mobile/openapi.json"} <= paths
    page.context.close()


def test_try_it_out_submits_the_documented_example_order(
    browser: "Browser", server: LiveServer, catalogue, artifacts: Path
) -> None:
    api_key = server.add_partner().key.api_key
    page = opened(browser, server, [])

    page.get_by_role("button", name="Authorize").first.click()
    bearer = page.locator(".auth-container").filter(has_text="bearerAuth")
    bearer.locator("input").fill(api_key)
    bearer.get_by_role("button", name="Apply credentials").click()
    bearer.get_by_role("button", name="Close").click()

    submit = page.locator("#operations-default-submitFulfilment")
    submit.locator(".opblock-summary-control").click()
    submit.get_by_role("button", name="Try it out").click()
    example = json.loads(submit.locator("textarea.body-param__text").input_value())
    assert example["productId"] in {p.product_id for p in catalogue}, "seed the example's product"
    submit.get_by_role("button", name="Execute").click()
    status = submit.locator(".live-responses-table tr.response .response-col_status")
    status.scroll_into_view_if_needed()
    screenshot(page, artifacts, "api-reference-try-it-out.png")
    assert status.inner_text().strip() == "202"
    page.context.close()

    http = server.session(api_key)
    order = http.get(server.endpoint(f"/orders/{example['orderId']}"))
    assert order.status_code == 200, order.text
    assert order.json()["productId"] == example["productId"]
