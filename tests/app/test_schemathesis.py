"""Generated requests against every operation in the OpenAPI schema never get a 500, whoever sends them.

Schemathesis generates inputs that fit the schema and inputs that break it, for each operation; each
case is sent as an annotator, as an admin and without credentials, and any 5xx fails the test with the
example that caused it. (Its pytest plugin's lazy fixtures fail on our pytest, so the loop is explicit.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from app.orm import Role

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def tokens(api_token) -> dict[str, str]:
    from app.db import session_scope
    from tests.factories import make_comparison_set

    with session_scope() as s:
        for _ in range(5):
            make_comparison_set(s, k=3)
    return {"annotator": api_token("fuzz-annotator"), "admin": api_token("fuzz-admin", Role.admin)}


def test_no_generated_input_makes_a_server_error(tokens):
    from app.main import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the schema lost its operations"
    header_sets = [{"Authorization": f"Bearer {t}"} for t in tokens.values()] + [{}]
    failures: dict[str, str] = {}
    for operation in operations:

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
            )
        )
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case) -> None:
            for headers in header_sets:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            no_server_error()
        except Exception as exc:
            failures[operation.label] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
