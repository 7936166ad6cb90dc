"""The OpenAPI document tells the truth: a bounded schemathesis run against the app, with an
institution's HIS key and with a pharmacist's token, finds no 5xx, no status the document
does not list, no undocumented media type and no body that breaks its schema.

Bounded: ``MAX_EXAMPLES`` valid and as many invalid requests per operation, each sent with
both credentials (about 1,500 requests). On SQLite; PostgreSQL-specific input
faults (NUL characters, integers past 4 bytes) have their own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from apiworld import World, build_world
from dbutil import fresh_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    for url in fresh_database("sqlite", tmp):
        # Throttling off: thousands of requests a minute from one address are the point here.
        yield from build_world(url, tmp, requests_per_credential="off", bad_credentials_per_address="off",
                               login_attempts_per_user="off", login_attempts_per_address="off")


def test_every_answer_is_documented_with_its_status_media_type_and_schema(fuzz_world: World) -> None:
    # The world's TestClient has run the app's lifespan (database, rulebase); schemathesis
    # calls the same app object in process.
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_world.client.app)
    credentials = (fuzz_world.his(), fuzz_world.user("pharmacist"))
    failures: dict[str, str] = {}
    seen: set[tuple[str, int]] = set()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        # The documented examples (a real prescription Bundle, a CDS request...) reach the
        # success paths; generated valid and invalid requests probe the rest.
        strategies = {"examples": st.one_of(operation.get_strategies_from_examples() or [st.nothing()]),
                      **{mode.value: operation.as_strategy(generation_mode=mode)
                         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)}}
        for name, strategy in strategies.items():

            @given(case=strategy)
            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                for headers in credentials:
                    response = case.call_and_validate(headers=headers, checks=CHECKS)
                    seen.add((case.operation.label, response.status_code))

            try:
                call()
            except Unsatisfiable:  # no such input exists (no examples; nothing to make invalid)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures
                failures[f"{operation.label} ({name})"] = str(exc)[:2000]
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    # The run reached the success paths too, not only refusals.
    for label, statuses in [("POST /api/v1/reviews", {200, 201}), ("POST /cds-services/{service_id}", {200}),
                            ("GET /health", {200}), ("GET /api/v1/tasks", {200}),
                            ("GET /api/v1/subscriptions", {200})]:
        assert any((label, status) in seen for status in statuses), (label, sorted(s for op, s in seen if op == label))
