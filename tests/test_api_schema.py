"""schemathesis against the live OpenAPI schema: for every operation of the running API, generated
requests (sent as an approver, an engineer and a compliance officer) never meet a server error, and
every answer has a status the operation declares and a body its schema describes.

It runs on a copy of the API project: a fuzzed write (a correction, an objection) may land on a real
contact there, and the shared project must stay as the other tests expect it. Operations are walked
one by one with Hypothesis (schemathesis's pytest loader for fixtures does not run under pytest 9.2),
so one failing operation does not hide the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_helpers import LiveServer, copy_api_project
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from clarion.api import create_app

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
ROLES = ("approver", "engineer", "compliance")  # between them, every permission's routes answer 2xx/4xx
EXAMPLES = 10  # per operation and generation mode; the examples take turns with the roles' keys


@pytest.fixture(scope="module")
def fuzzed_api(api_project, tmp_path_factory) -> Iterator[dict[str, Any]]:
    project = copy_api_project(api_project, tmp_path_factory.mktemp("fuzzed_api"), write_wait_seconds=2.0)
    with LiveServer(create_app(project["settings"])) as server:
        yield {**project, "server": server}


def _fuzz(operation: Any, mode: GenerationMode, keys: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        role = ROLES[next(turn) % len(ROLES)]
        case.call_and_validate(headers={"Authorization": f"Bearer {keys[role]}"}, checks=CHECKS)

    turn = itertools.count()
    run()


def _has_input(operation: Any) -> bool:
    return bool(list(operation.iter_parameters())) or bool(operation.body)


@pytest.mark.slow  # schemathesis fuzzes every operation (about 15 s): in the slow set, run by CI
def test_every_operation_answers_as_its_schema_says(fuzzed_api) -> None:
    schema = schemathesis.openapi.from_url(fuzzed_api["server"].url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3
    failures = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, fuzzed_api["keys"])
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                assert mode == GenerationMode.NEGATIVE and not _has_input(operation), operation.label
            except Exception as exc:  # collected, so that every operation is fuzzed
                failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
