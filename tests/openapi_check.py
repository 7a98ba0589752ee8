"""Checks that a real response is what the OpenAPI document says it may be."""

import json
from typing import Any

import requests
from jsonschema import Draft202012Validator

import t2ctl
from t2ctl.api import openapi

SPEC: dict[str, Any] = openapi.document(t2ctl.__version__)


def operation(method: str, template: str) -> dict[str, Any]:
    return SPEC["paths"][f"/t2mobile{template}"][method.lower()]


def assert_documented(method: str, template: str, response: requests.Response) -> None:
    """The status is documented for the operation, its required headers are present, and the
    body matches its schema."""
    responses = operation(method, template)["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {template} answered {status}, undocumented"
    documented = responses[status]
    if "$ref" in documented:
        documented = SPEC["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{status} lacks the documented {name} header"
    content = documented.get("content")
    if content is None:
        assert not response.content
        return
    media_type = response.headers["Content-Type"].split(";")[0]
    assert media_type in content, f"{media_type} not documented for {status}"
    schema = {**content[media_type]["schema"], "components": SPEC["components"]}
    Draft202012Validator(schema).validate(json.loads(response.content))


def assert_event_documented(event: dict[str, Any]) -> None:
    """A webhook body matches the schema the document gives its event type."""
    documented = SPEC["webhooks"][event["type"]]["post"]["requestBody"]["content"]
    schema = {**documented["application/json"]["schema"], "components": SPEC["components"]}
    Draft202012Validator(schema).validate(event)
