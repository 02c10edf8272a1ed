"""Experiment statistics (models/experiments.py, models/uplift.py) at several sizes, against floors.

Data: customers simulated over 30 daily looks, half treated at random; 5% convert without the message
(the baseline rises with a recency feature) and engaged customers (half of them) convert 2 points more
when treated, the others not at all: an average uplift of 1 point with a planted heterogeneity.
*Results*: what `clarion results` does for one campaign: customers and conversions per day and arm
from the customer rows (one bincount), cumulative sums, then the sample-ratio check, the uplift with
its Newcombe and Katz intervals, the always-valid sequential test read at all 30 looks, and the
probability of being best. *Floor*: one numpy pass over the same arrays, customers and conversions
per arm (the least any result needs). *Uplift*: the two-model learner (LightGBM, 60 trees each)
fitted on half the customers and predicted on the other half, then the Qini coefficient of its
ranking and of the oracle ranking by the planted uplift. *Fit floor*: one LightGBM model with the same
parameters on all the fitting customers (the learner fits two, one per arm, on half as many each).
*Qini test*: the permutation test `clarion results` runs before it trusts the model, its ranking
of the held-out half against 200 seeded random rankings: *now* (one shuffle and integer running
sums per draw), *before* (argsort of uniform draws in blocks, float running sums, as until
2026-12-05) and a *floor* of one shuffle and one running sum per draw. *Sampled arm*: the same
simulation with 79 treated customers per control one (the split of the 1,000,000 bench's exposures);
the learner fitted on every customer of the fitting half, and on the sample `clarion results` takes
at experiments.uplift_arm_ratio 10 (every control customer, about 10 treated per control one,
five seeded draws standing for five hashes; fit rows are the last draw's), each scored by its
Qini coefficient on the whole held-out half, and by the permutation test on the held-out rows its
validation reads (all of them / the 10:1 sample of them), from 100,000 customers (at 10,000 the
fitting half holds about 63 control customers, too few to fit).
Times exclude reading the arrays; results and floor are the fastest of 5 runs (they take
milliseconds); each measurement runs in its own process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report

DATA = OUT / "experiments"
LOOKS = 30
BASE_LOGIT = -3.0  # about 5% conversion without the message
UPLIFT_ENGAGED = 0.02
REPEATS = 5  # results and floor: the fastest of this many runs


SKEWED = 79 / 80  # treated share of the 1,000,000 bench's exposures
ARM_RATIO = 10  # experiments.uplift_arm_ratio's default
SAMPLE_DRAWS = 5  # 10:1 samples drawn per size: one draw's Qini varies as much as the sampling costs
SKEWED_FROM = 100_000  # below, the fitting half's control arm has too few converters to fit


def ensure_data(n: int, treated_share: float = 0.5) -> Path:
    import numpy as np

    path = DATA / (
        f"customers-{n}.npz" if treated_share == 0.5 else f"customers-{n}-treated-{treated_share:.4f}.npz"
    )
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, 4)).astype(np.float32)  # engagement, recency, tenure, noise
    truth = np.where(features[:, 0] > 0, UPLIFT_ENGAGED, 0.0)
    baseline = 1 / (1 + np.exp(-(BASE_LOGIT + 0.5 * features[:, 1])))
    treated = rng.random(n) < treated_share
    converted = rng.random(n) < baseline + truth * treated
    day = rng.integers(0, LOOKS, n).astype(np.int16)
    np.savez(path, features=features, truth=truth, treated=treated, converted=converted, day=day)
    return path


def _load(data: str, *names: str) -> list[Any]:
    import numpy as np

    with np.load(data) as arrays:
        return [np.array(arrays[name]) for name in names]


def _results(day: Any, treated: Any, converted: Any) -> dict[str, Any]:
    import numpy as np

    from models.experiments import prob_best, sequential_test, srm, uplift

    started = time.perf_counter()
    key = day.astype(np.int64) * 2 + treated
    customers = np.bincount(key, minlength=2 * LOOKS).reshape(LOOKS, 2).cumsum(axis=0)
    conversions = np.bincount(key, weights=converted, minlength=2 * LOOKS).reshape(LOOKS, 2).cumsum(axis=0)
    aggregate_s = time.perf_counter() - started
    started = time.perf_counter()
    (nc, nt), (xc, xt) = customers[-1], conversions[-1]
    srm_p = srm([nt, nc], [0.5, 0.5])
    measured = uplift(xt, nt, xc, nc)
    test = sequential_test(conversions[:, 1], customers[:, 1], conversions[:, 0], customers[:, 0])
    best = prob_best([xc, xt], [nc, nt], seed=0)
    statistics_s = time.perf_counter() - started
    significant_at = np.flatnonzero(test.p_values < 0.05)
    return {
        "aggregate_s": aggregate_s,
        "statistics_s": statistics_s,
        "srm_p": srm_p,
        "uplift": [measured.absolute, measured.abs_low, measured.abs_high],
        "relative": [measured.relative, measured.rel_low, measured.rel_high],
        "p_value": test.p_value,
        "interval": [test.low, test.high],
        "first_significant_look": int(significant_at[0]) + 1 if significant_at.size else None,
        "prob_best_treated": float(best[1]),
    }


def run_results(data: str) -> dict[str, Any]:
    """The fastest of REPEATS runs of each step (milliseconds on a shared machine: one run is noise)."""
    runs = [_results(*_load(data, "day", "treated", "converted")) for _ in range(REPEATS)]
    fastest = {k: min(r[k] for r in runs) for k in ("aggregate_s", "statistics_s")}
    return {**runs[0], **fastest}


def run_floor(data: str) -> dict[str, Any]:
    import numpy as np

    treated, converted = _load(data, "treated", "converted")
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        customers = np.bincount(treated, minlength=2)
        conversions = np.bincount(treated, weights=converted, minlength=2)
        times.append(time.perf_counter() - started)
    return {"floor_s": min(times), "customers": customers.tolist(), "conversions": conversions.tolist()}


def run_uplift(data: str) -> dict[str, Any]:

    from models.uplift import TwoModelUplift, qini_coefficient

    features, truth, treated, converted = _load(data, "features", "truth", "treated", "converted")
    fit, hold = slice(0, None, 2), slice(1, None, 2)  # rows are already in random order
    started = time.perf_counter()
    model = TwoModelUplift(seed=0).fit(features[fit], treated[fit], converted[fit])
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    predicted = model.predict(features[hold])
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    qini = qini_coefficient(predicted, treated[hold], converted[hold])
    qini_s = time.perf_counter() - started
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "qini_s": qini_s,
        "qini": qini,
        "oracle_qini": qini_coefficient(truth[hold], treated[hold], converted[hold]),
    }


def _arm_sample(treated: Any, seed: int) -> Any:
    """Rows of a 10:1 sample as `clarion results` takes it: every row of the smaller arm, the larger
    arm's rows each kept with the share ``kept_buckets`` gives it (a seeded draw stands for the hash)."""
    import numpy as np

    from clarion.results.uplift import BUCKETS, kept_buckets

    kept = kept_buckets(int(treated.sum()), int((~treated).sum()), ARM_RATIO)
    share = np.where(treated, kept[0], kept[1]) / BUCKETS
    return np.random.default_rng(seed).random(treated.size) < share


def run_sampled_arm(data: str, draws: int) -> dict[str, Any]:
    """``draws`` 0: fitted on every customer of the fitting half; otherwise that many 10:1 samples
    (seeds 1, 2, ...), each fitted and validated: times are their means, p and Qini each draw's."""
    import numpy as np

    from models.uplift import TwoModelUplift, qini_coefficient, qini_vs_random

    features, truth, treated, converted = _load(data, "features", "truth", "treated", "converted")
    half, hold = np.zeros(treated.size, bool), np.zeros(treated.size, bool)
    half[::2], hold[1::2] = True, True
    out: dict[str, Any] = {"fit_s": [], "validate_s": [], "p_value": [], "qini_whole": []}
    for seed in range(1, draws + 1) if draws else [0]:
        chosen = _arm_sample(treated, seed) if seed else np.ones(treated.size, bool)
        fit, validated = half & chosen, hold & chosen
        started = time.perf_counter()
        model = TwoModelUplift(seed=0).fit(features[fit], treated[fit], converted[fit])
        out["fit_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        check = qini_vs_random(
            model.predict(features[validated]), treated[validated], converted[validated], seed=0
        )
        out["validate_s"].append(time.perf_counter() - started)
        out["p_value"].append(check.p_value)
        out["qini_whole"].append(
            qini_coefficient(model.predict(features[hold]), treated[hold], converted[hold])
        )
        out.update(
            fit_rows=int(fit.sum()),
            fit_treated=int((fit & treated).sum()),
            fit_control=int((fit & ~treated).sum()),
            validation_rows=int(validated.sum()),
        )
    out["oracle_qini"] = qini_coefficient(truth[hold], treated[hold], converted[hold])
    return out


def _qini_test_by_argsort(uplift: Any, treatment: Any, y: Any, draws: int, seed: int = 0) -> Any:
    """qini_vs_random as it was before 2026-12-05 (random rankings by argsort of uniform draws, in
    blocks of 20M elements, float running sums), kept here as the before of the bench."""
    import numpy as np

    from models.uplift import _inputs, _qini_points, qini_coefficient

    t, out = _inputs(treatment, y)
    model = qini_coefficient(uplift, t, out)
    n = t.size
    rng = np.random.default_rng(seed)
    ends = np.arange(n)
    block = max(1, 20_000_000 // max(n, 1))
    coefficients = []
    for start in range(0, draws, block):
        order = np.argsort(rng.random((min(block, draws - start), n)), axis=1)
        qini = _qini_points(t[order], out[order], ends)
        curve = np.concatenate([np.zeros((qini.shape[0], 1)), qini], axis=1)
        line = np.arange(n + 1) / n * qini[:, -1:]
        coefficients.append(np.trapezoid(curve - line, dx=1.0 / n, axis=1))
    random = np.concatenate(coefficients)
    return model, float((1 + np.sum(random >= model)) / (1 + random.size))


def run_qini_test(data: str, how: str) -> dict[str, Any]:
    """The permutation test of the model's ranking against RANDOM_DRAWS random rankings of the held-out
    half: ``now`` (models.uplift.qini_vs_random), ``before`` (the argsort version) or ``floor`` (one
    shuffle and one running sum per draw: the least a permutation test of a running statistic does)."""
    import numpy as np

    from models.uplift import RANDOM_DRAWS, TwoModelUplift, qini_vs_random

    features, treated, converted = _load(data, "features", "treated", "converted")
    fit, hold = slice(0, None, 2), slice(1, None, 2)
    predicted = (
        TwoModelUplift(seed=0).fit(features[fit], treated[fit], converted[fit]).predict(features[hold])
    )
    t, y = treated[hold], converted[hold]
    started = time.perf_counter()
    checksum = None
    if how == "now":
        p_value = qini_vs_random(predicted, t, y, draws=RANDOM_DRAWS, seed=0).p_value
    elif how == "before":
        p_value = _qini_test_by_argsort(predicted, t, y, RANDOM_DRAWS)[1]
    else:
        rng = np.random.default_rng(0)
        codes, p_value = t.astype(np.int8), None
        checksum = sum(
            int(np.cumsum(rng.permutation(codes), dtype=np.int32)[-1]) for _ in range(RANDOM_DRAWS)
        )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "p_value": p_value, "checksum": checksum, "held_out": int(t.size)}


def run_fit_floor(data: str) -> dict[str, Any]:
    import lightgbm as lgb

    from models.uplift import PARAMS, TREES

    features, converted = _load(data, "features", "converted")
    started = time.perf_counter()
    lgb.train({**PARAMS, "seed": 0}, lgb.Dataset(features[::2], label=converted[::2]), num_boost_round=TREES)
    return {"fit_floor_s": time.perf_counter() - started}


HEAD = [
    "| customers | results ms (aggregate / statistics) | peak MB | floor ms | results / floor "
    "(aggregate / floor) "
    "| uplift, 95% interval (truth 0.010) | always-valid p at look 30 (first look < 0.05); interval "
    "| SRM p "
    "| P(treated best) |",
    "|---:|---|---:|---:|---:|---|---|---:|---:|",
]
UPLIFT_HEAD = [
    "| customers | fit s (half the customers) | predict s (other half) | Qini s | peak MB | fit floor s "
    "| fit / fit floor | Qini coefficient: model / oracle "
    "| Qini test s, 200 random rankings: now / before / floor | now / floor | peak MB: now / before "
    "| p: now / before |",
    "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|",
]
SAMPLED_HEAD = [
    "| customers (79 treated : 1 control) | fitted on | fit rows (treated / control) | fit s "
    "| validation rows | validate s (predict + 200 random rankings) | peak MB | p "
    "| Qini on the whole held-out half | oracle Qini |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
]


def main(sizes: list[int]) -> str:
    import numpy as np

    records: list[dict[str, Any]] = []
    rows_md, uplift_md, sampled_md = list(HEAD), list(UPLIFT_HEAD), list(SAMPLED_HEAD)
    loads: list[str] = []
    for n in sizes:
        data = str(ensure_data(n))
        load = os.getloadavg()[0]  # the machine is shared: how busy it was as this size started
        loads.append(f"{n:,}: {load:.2f}")
        results = measure("bench.experiments:run_results", data=data)
        floor = measure("bench.experiments:run_floor", data=data)
        learner = measure("bench.experiments:run_uplift", data=data)
        fit_floor = measure("bench.experiments:run_fit_floor", data=data)
        tests = {
            how: measure("bench.experiments:run_qini_test", data=data, how=how)
            for how in ("now", "before", "floor")
        }
        q = {how: m.result for how, m in tests.items()}
        r, f, u = results.result, floor.result, learner.result
        total = r["aggregate_s"] + r["statistics_s"]
        low, high = r["interval"]
        first = r["first_significant_look"]
        rows_md.append(
            f"| {n:,} | {total * 1e3:.2f} ({r['aggregate_s'] * 1e3:.2f} / {r['statistics_s'] * 1e3:.2f}) "
            f"| {results.peak_rss_mb:,.0f} | {f['floor_s'] * 1e3:.3f} "
            f"| {total / f['floor_s']:.1f}x ({r['aggregate_s'] / f['floor_s']:.1f}x) "
            f"| {r['uplift'][0]:+.4f} ({r['uplift'][1]:+.4f} to {r['uplift'][2]:+.4f}) "
            f"| {r['p_value']:.3g} ({first or 'none'}); {low:+.4f} to {high:+.4f} "
            f"| {r['srm_p']:.3f} | {r['prob_best_treated']:.3f} |"
        )
        floor_fit = fit_floor.result["fit_floor_s"]
        uplift_md.append(
            f"| {n:,} | {u['fit_s']:.2f} | {u['predict_s']:.2f} | {u['qini_s']:.3f} "
            f"| {learner.peak_rss_mb:,.0f} | {floor_fit:.2f} | {u['fit_s'] / floor_fit:.1f}x "
            f"| {u['qini']:.5f} / {u['oracle_qini']:.5f} "
            f"| {q['now']['seconds']:.2f} / {q['before']['seconds']:.2f} / {q['floor']['seconds']:.2f} "
            f"| {q['now']['seconds'] / q['floor']['seconds']:.1f}x "
            f"| {tests['now'].peak_rss_mb:,.0f} / {tests['before'].peak_rss_mb:,.0f} "
            f"| {q['now']['p_value']:.3g} / {q['before']['p_value']:.3g} |"
        )
        record = {
            "customers": n,
            "load_1min": load,
            "results": {**r, "wall_s": results.wall_s, "peak_rss_mb": results.peak_rss_mb},
            "floor": {**f, "peak_rss_mb": floor.peak_rss_mb},
            "uplift": {**u, "wall_s": learner.wall_s, "peak_rss_mb": learner.peak_rss_mb},
            "fit_floor": {**fit_floor.result, "peak_rss_mb": fit_floor.peak_rss_mb},
            "qini_test": {how: {**m.result, "peak_rss_mb": m.peak_rss_mb} for how, m in tests.items()},
        }
        skewed = str(ensure_data(n, SKEWED))
        arms = {
            how: measure("bench.experiments:run_sampled_arm", data=skewed, draws=draws)
            for how, draws in (("every customer", 0), (f"10:1 sample, {SAMPLE_DRAWS} draws", SAMPLE_DRAWS))
            if n >= SKEWED_FROM
        }
        for how, m in arms.items():
            a = m.result
            qini = a["qini_whole"]
            qini_text = f"{qini[0]:.5f}"
            if len(qini) > 1:
                qini_text = f"mean {np.mean(qini):.5f} ({', '.join(f'{v:.5f}' for v in qini)})"
            sampled_md.append(
                f"| {n:,} | {how} | {a['fit_rows']:,} ({a['fit_treated']:,} / {a['fit_control']:,}) "
                f"| {np.mean(a['fit_s']):.2f} | {a['validation_rows']:,} | {np.mean(a['validate_s']):.2f} "
                f"| {m.peak_rss_mb:,.0f} | {', '.join(f'{p:.3g}' for p in a['p_value'])} | {qini_text} "
                f"| {a['oracle_qini']:.5f} |"
            )
        record["sampled_arm"] = {how: {**m.result, "peak_rss_mb": m.peak_rss_mb} for how, m in arms.items()}
        records.append(record)
        print(record, flush=True)
    notes = " ".join(__doc__.split("\n\n", 1)[1].split())
    notes += f" One-minute load average (2 cores) as each size started: {'; '.join(loads)}."
    tables = [
        *rows_md,
        "\nThe uplift learner on the same customers:\n",
        *uplift_md,
        "\nThe uplift learner on a 79:1 split, on every customer and on the 10:1 sample:\n",
        *sampled_md,
    ]
    return report(
        "experiments", records, notes, tables, title="Experiments (results, sequential test, uplift)"
    )
