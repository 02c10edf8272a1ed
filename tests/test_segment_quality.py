"""The model's quality bar on the full synthetic CRM, out of time: calibrated (ECE <= 0.03) and ahead
of the classic models on the same customers.

20,000 customers: enough validation customers (about 18,000) for an ECE whose noise is well below
the bar. The golden project of test_segment.py (1,500 customers) is too small for that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from project_helpers import run_pipeline_in
from sklearn.metrics import roc_auc_score

from clarion.config import GenerateSettings
from clarion.synth.generator import generate

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_server) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("quality")
    (root / "clarion.yaml").write_text(
        "warehouse:\n  path: var/warehouse.duckdb\ngenerate:\n  out: var/crm\n"
    )
    generate(
        GenerateSettings(customers=20_000, seed=9, defects=0.0, format="parquet"), out=root / "var" / "crm"
    )
    result = run_pipeline_in(root, stages=["prepare", "extract", "transform", "segment"])
    return root, result


def test_out_of_time_the_model_is_calibrated_and_beats_recency_frequency_and_bgnbd(run) -> None:
    root, result = run
    card = json.loads((root / "var" / "registry" / "purchase_propensity" / "v0001" / "card.json").read_text())
    m = card["metrics"]
    model, baseline, bgnbd = m["propensity"], m["baseline"], m["customer_base"]
    assert model["customers"] > 15_000
    assert model["ece"] <= 0.03, model["ece"]
    assert model["roc_auc"] > baseline["roc_auc"] + 0.01, (model["roc_auc"], baseline["roc_auc"])
    assert model["roc_auc"] > bgnbd["roc_auc"], (model["roc_auc"], bgnbd["roc_auc"])
    assert model["pr_auc"] > baseline["pr_auc"] and model["brier"] < baseline["brier"]
    # the mean prediction tracks the observed rate of the validation day (no seasonal or population shift)
    assert abs(model["mean_predicted"] - model["positive_rate"]) < 0.02
    assert result["stages"]["segment"]["trained"]["decision"] == "promoted v0001 (first version)"


def test_the_scores_rank_the_planted_truth(run) -> None:
    root, _ = run
    import duckdb

    con = duckdb.connect(str(root / "var" / "warehouse.duckdb"), read_only=True)
    try:
        scores = con.execute("select contact_id, margin from ml.customer_scores").df()
    finally:
        con.close()
    truth = pd.read_parquet(root / "var" / "crm" / "truth" / "contacts.parquet")
    both = scores.merge(truth, on="contact_id", validate="one_to_one")
    assert len(both) == len(scores) > 19_000
    assert roc_auc_score(both["will_purchase_90d"], both["margin"]) > 0.72
