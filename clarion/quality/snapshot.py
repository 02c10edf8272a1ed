"""The marts suite on training snapshots: a model learns only from features that pass the same rules.

Training stacks past days of ``customer_features`` built outside the publication path (a scratch
schema, see clarion/segment/snapshots.py), so the marts gate never sees them. Before a model learns
from them, the suite's expectations on ``customer_features`` (keys, value ranges, consent known, ...)
run on the stacked frame with Great Expectations; the stack holds one row per customer and day, so a
uniqueness rule on a column is checked per day (the column with ``as_of``). Metric checks compare a
build with a publication and do not apply; labels are checked complete by training itself.
"""

from __future__ import annotations

import time

import pandas as pd

from clarion.config import Settings
from clarion.quality.results import CheckResult, GateResult, QualityGateError
from clarion.quality.suites import Check, load_suite
from clarion.quality.validator import Validator

TABLE = "customer_features"
NAME = "training_snapshots"  # the batch name in Great Expectations and in messages


class SnapshotGateError(QualityGateError):
    """Training snapshots broke a `fail` check of the marts suite: no model learns from them."""

    def __init__(self, gate: GateResult) -> None:
        self.gate = gate
        lines = [
            f"training snapshots failed the marts suite: {len(gate.failures)} check(s) with severity fail"
        ]
        lines += [f"  - {r.describe()}" for r in gate.failures]
        lines.append(
            "  No model was trained and the promoted model stays. The snapshot days are built by the dbt"
            " project from raw: fix the model or the data (then `clarion segment --retrain`), or, if the"
            " change is expected, edit the check in marts.yml of quality.suites_dir and raise its version."
        )
        Exception.__init__(self, "\n".join(lines))


def per_day(check: Check) -> Check:
    """The check as it applies to stacked days: uniqueness of a column becomes uniqueness per day."""
    update: dict = {"table": NAME}
    if check.expectation == "expect_column_values_to_be_unique":
        update |= {
            "expectation": "expect_compound_columns_to_be_unique",
            "kwargs": {"column_list": [check.kwargs["column"], "as_of"]},
        }
    return check.model_copy(update=update)


def gate_snapshots(settings: Settings, frame: pd.DataFrame) -> GateResult:
    """Run the marts suite's expectations on ``customer_features`` over the stacked training frame;
    raise SnapshotGateError when a `fail` check breaks (or names a column the frame lacks)."""
    started = time.perf_counter()
    suite = load_suite(settings.quality.suites_dir, "marts")
    checks = [per_day(c) for c in suite.table_checks.get(TABLE, [])]
    invalid = []
    runnable = []
    for check in checks:
        missing = [c for t, c in check.names if c and c not in frame.columns]
        if missing:
            invalid.append(
                CheckResult(
                    check.id,
                    check.severity,
                    "invalid",
                    check.expectation,
                    NAME,
                    missing[0],
                    {"unknown": f"column {TABLE}.{missing[0]}"},
                    [],
                    f"check {check.id} in {suite.path} names column {TABLE}.{missing[0]}, which the"
                    " training snapshots do not have: correct the name in the suite file, raise its version",
                )
            )
        else:
            runnable.append(check)
    checked = suite.model_copy(update={"checks": runnable})
    validator = Validator(settings, checked)
    columns = sorted({"contact_id", "as_of"} | {c for ch in runnable for _, c in ch.names if c})
    results = invalid + validator.tables({NAME: frame[[c for c in columns if c in frame.columns]]})
    gate = GateResult(f"{suite.suite} on {NAME}", suite.version, results, validator.docs(), 0.0)
    gate.seconds = time.perf_counter() - started
    if not gate.passed:
        raise SnapshotGateError(gate)
    return gate
