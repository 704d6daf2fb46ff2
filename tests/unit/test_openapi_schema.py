"""`/openapi.json` says what the API does (issue 9): the error model on every error status, one
payload schema per task type, the bearer scheme, and patterns that accept only what the door does.
The live check of all of it is `tests/integration/test_openapi_schemathesis.py`."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.api.openapi import REF_PATTERN, repo_url_pattern
from service.config import Settings
from service.models import TaskType
from service.payloads import PAYLOAD_MODELS
from service.repo_url import validate_ref, validate_repo_url

pytestmark = pytest.mark.unit

ERROR_REF = "#/components/schemas/ErrorBody"
GUARDED_OPEN_PATHS = {"/health", "/ready"}


def openapi(**overrides: Any) -> dict[str, Any]:
    return create_app(Settings(**overrides)).openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method.upper(), op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_error_status_is_the_error_model() -> None:
    schema = openapi(api_tokens=["t"])
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, method, op in operations(schema):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": ERROR_REF}, (method, path, status)
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "details"}


@pytest.mark.parametrize(("method", "path", "statuses"), [
    ("POST", "/tasks", {"202", "401", "409", "413", "422", "503"}),
    ("GET", "/tasks", {"200", "401", "422", "503"}),
    ("GET", "/tasks/{task_id}", {"200", "401", "404", "503"}),
    ("GET", "/tasks/{task_id}/events", {"200", "401", "404", "503"}),
    ("GET", "/tasks/{task_id}/stream", {"200", "401", "404", "503"}),
    ("POST", "/tasks/{task_id}/cancel", {"202", "401", "404", "409", "503"}),
    ("POST", "/events", {"202", "401", "413", "422", "503"}),
    ("POST", "/dlq/replay", {"202", "401", "413", "422", "503"}),
    ("GET", "/queues", {"200", "401", "503"}),
    ("GET", "/metrics", {"200", "401"}),
    ("GET", "/ready", {"200", "503"}),
])
def test_each_route_documents_the_statuses_it_answers(method: str, path: str, statuses: set[str]) -> None:
    documented = set(openapi(api_tokens=["t"])["paths"][path][method.lower()]["responses"])
    assert statuses <= documented


def test_the_submit_body_is_a_union_discriminated_by_type_with_the_validating_models() -> None:
    schemas = openapi()["components"]["schemas"]
    submit = schemas["TaskSubmit"]
    assert submit["discriminator"]["propertyName"] == "type"
    assert set(submit["discriminator"]["mapping"]) == {task_type.value for task_type in TaskType}
    for task_type, ref in submit["discriminator"]["mapping"].items():
        variant = schemas[ref.rsplit("/", 1)[1]]
        assert variant["properties"]["type"]["const"] == task_type
        assert variant["additionalProperties"] is False
        model = PAYLOAD_MODELS[TaskType(task_type)]
        assert variant["properties"]["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        payload = schemas[model.__name__]
        assert set(payload["properties"]) == set(model.model_json_schema(by_alias=True)["properties"])
    simulate = schemas["SimulatePayload"]["properties"]
    assert simulate["durationMs"]["maximum"] == 3_600_000
    assert simulate["outcome"]["enum"] == ["success", "retryable", "terminal", "crash", "hang"]


def test_text_the_database_cannot_store_is_outside_the_schema() -> None:
    schemas = openapi()["components"]["schemas"]
    for name in ("ExternalEvent", "WaitForEvent"):
        for field in ("type", "key"):
            assert schemas[name]["properties"][field]["pattern"] == "^[^\\x00]*$"
    assert schemas["ImpactPayload"]["properties"]["changedFiles"]["items"]["pattern"] == "^[^\\x00]*$"
    cursor = next(p for p in openapi()["paths"]["/tasks"]["get"]["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["pattern"] == "^[A-Za-z0-9_-]*$"  # beside anyOf: a pattern only binds strings


def test_the_bearer_scheme_is_declared_and_required_only_when_tokens_are_set() -> None:
    scheme = {"type": "http", "scheme": "bearer"}
    open_schema = openapi()
    assert open_schema["components"]["securitySchemes"]["bearerAuth"].items() >= scheme.items()
    assert all("security" not in op and "401" not in op["responses"] for _, _, op in operations(open_schema))
    for path, method, op in operations(openapi(api_tokens=["t"])):
        if path in GUARDED_OPEN_PATHS:
            assert op["security"] == [], (method, path)
        else:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"], (method, path)


def test_local_repositories_are_in_the_schema_only_where_allowed() -> None:
    def url_pattern(schema: dict[str, Any]) -> str:
        return str(schema["components"]["schemas"]["RepositoryPayload"]["properties"]["repoUrl"]["pattern"])

    assert url_pattern(openapi(allow_local_repos=True)) == repo_url_pattern(allow_local=True)
    assert url_pattern(openapi()) == repo_url_pattern(allow_local=False)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(url=st.from_regex(repo_url_pattern(allow_local=True), fullmatch=True), allow_local=st.booleans())
def test_every_repo_url_the_schema_allows_is_accepted(url: str, allow_local: bool) -> None:
    if allow_local or re.fullmatch(repo_url_pattern(allow_local=False), url):
        validate_repo_url(url, allow_local=allow_local)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(ref=st.from_regex(REF_PATTERN, fullmatch=True))
def test_every_ref_the_schema_allows_is_accepted(ref: str) -> None:
    validate_ref(ref)


@pytest.mark.parametrize("url", ["ext::sh -c x", "-oProxyCommand=x@h:p", "https://h/", "https://h/a#x",
                                 "https://h/a;p", "git@h:-x", "file:///x", "/srv/x"])
def test_repo_urls_the_door_refuses_are_outside_the_network_pattern(url: str) -> None:
    assert re.fullmatch(repo_url_pattern(allow_local=False), url) is None


@pytest.mark.parametrize("ref", ["-x", "a..b", "a.lock", "a/", "@", "a@{b", "a b", "a\\b", "/a", ".a"])
def test_refs_the_door_refuses_are_outside_the_pattern(ref: str) -> None:
    assert re.fullmatch(REF_PATTERN, ref) is None


async def test_options_and_405_list_every_method_of_the_path() -> None:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        options = await client.options("/tasks")
        assert options.status_code == 204
        assert options.headers["allow"] == "GET, OPTIONS, POST"
        refused = await client.delete("/tasks")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, OPTIONS, POST"
        assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert (await client.options("/tasks/anything/cancel")).headers["allow"] == "OPTIONS, POST"
        assert (await client.options("/no/such/path")).status_code == 404
