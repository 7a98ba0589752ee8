"""schemathesis against the OpenAPI document the server serves, on a real server over loopback
with a real API key: every operation, with data the document allows (positive) and data it
forbids (negative), answers with a documented status, headers and body, and never a 5xx."""

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from t2ctl import partners
from tests.conftest import CATALOGUE, LiveServer

ACTIVE = [p for p in CATALOGUE if p.active]
EXAMPLES = 40  # per operation and mode; derandomized by the profile in conftest


def priced(body: dict[str, Any]) -> None:
    """Name a product of the catalogue at its price, so that a body the document allows gets
    through intake to the database: which products exist is not the document's to say."""
    quantity = int(body["quantity"])  # JSON Schema's integer includes 1.0
    product = ACTIVE[quantity % len(ACTIVE)]
    body["productId"] = product.product_id
    body["amount"] = product.price.times(quantity).public()
    body.pop("renewalOf", None)


# Values only the server hands out (a page's nextCursor, an event's id): which of them exist
# is not the document's to say, so a well-formed one may name nothing and be a 400.
OPAQUE = {"cursor", "after"}


def opaque(operation: schemathesis.APIOperation) -> bool:
    return any(p["name"] in OPAQUE for p in operation.definition.raw.get("parameters", []))


def modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    """Negative data only where there is something to spoil: a parameter or a body."""
    definition = operation.definition.raw
    if definition.get("parameters") or definition.get("requestBody"):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def test_every_operation_answers_as_documented(server: LiveServer, catalogue) -> None:
    new = server.add_partner()
    partners.update(new.partner.name, sandbox=True, rate_limit="100000/minute")
    auth = {"Authorization": f"Bearer {new.key.api_key}"}
    served = requests.get(server.endpoint("/openapi.json")).json()
    # from_dict: from_url leaves out the operation that serves the document itself.
    schema = schemathesis.openapi.from_dict(served)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(methods) for methods in served["paths"].values())

    for operation in operations:
        for mode in modes(operation):
            fuzz(operation, mode, base_url=server.url, headers=auth)


def fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    *,
    base_url: str,
    headers: dict[str, str],
) -> None:
    """Run EXAMPLES cases of ``operation`` in ``mode``; raise on the first that fails."""
    positive = mode is GenerationMode.POSITIVE
    submits = positive and operation.label.endswith("/fulfilment")
    pages = positive and opaque(operation)

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case: schemathesis.Case) -> None:
        if pages:
            response = case.call_and_validate(
                base_url=base_url, headers=headers, excluded_checks=[positive_data_acceptance]
            )
            if response.status_code == 400:
                (problem,) = response.json()["errors"]
                assert problem["field"] in OPAQUE & set(case.query or {}), response.text
            else:
                assert response.status_code == 200, response.text
            return
        if not submits:
            case.call_and_validate(base_url=base_url, headers=headers)
            return
        priced(case.body)
        response = case.call_and_validate(
            base_url=base_url, headers=headers, excluded_checks=[positive_data_acceptance]
        )
        # A mailbox must be deliverable, which "format": "email" cannot say: the document's
        # description does (no special-use domain such as .test).
        if response.status_code == 422:
            problems = response.json()["errors"]
            assert [p["field"] for p in problems] == ["customer.email"], response.text
        else:
            assert response.status_code in (200, 202, 409), response.text

    answers_as_documented()
