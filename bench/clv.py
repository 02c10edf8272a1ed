"""CLV: BG/NBD and Gamma-Gamma (models/clv/) at several sizes, against a floor and PyMC-Marketing.

Data: customers simulated from BG/NBD with known parameters (in days) and followed HORIZON days past
their snapshot, so the predictions are checked against what really happened next; spend per order is
simulated from Gamma-Gamma. *Fit*: BetaGeo().fit (default: on a seeded 200,000-customer subsample) and,
where the size exceeds that, on every customer. *Predict*: P(alive) and expected purchases in the next
HORIZON days for every customer. *Floor*: in the same run, numpy reading the arrays and one evaluation
of the vectorised BG/NBD log-likelihood over all rows (a fit needs a few dozen such evaluations).

PyMC-Marketing runs in its own interpreter (CLARION_BENCH_PYMC_PYTHON, a separate venv: it is not a
dependency of Clarion) on the same arrays: BetaGeoModel with flat priors on r, alpha, a, b, so that
its MAP is the maximum-likelihood estimate and directly comparable, fitted with method="map" twice in
a process whose pytensor compile cache starts empty (*cold*: the first fit compiles) and twice in a
second process that reuses that cache (a nightly job with a kept cache). Each measurement runs in its
own process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import OUT, measure, report

DATA = OUT / "clv"
TRUTH = {"r": 0.75, "alpha": 40.0, "a": 0.8, "b": 2.5}  # CDNOW-like heterogeneity, in days
SPEND = {"p": 6.0, "q": 4.0, "v": 15.0}  # mean order value p v / (q - 1) = 30
HORIZON = 90.0
MAX_ROWS = 200_000
PYMC_ENV = "CLARION_BENCH_PYMC_PYTHON"
PYMC_FITS = 2  # fits per PyMC process: the first pays for compiling, the second shows the warm cost


def simulate(n: int, seed: int) -> dict[str, Any]:
    """BG/NBD customers acquired over two years, observed to their snapshot, followed HORIZON days on;
    each purchase's value Gamma(p, nu), nu ~ Gamma(q, v) per customer."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUTH["r"], 1.0 / TRUTH["alpha"], n)
    drop = rng.beta(TRUTH["a"], TRUTH["b"], n)
    age = np.floor(rng.uniform(90.0, 720.0, n))
    now, x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    active = np.arange(n)
    while active.size:
        when = now[active] + rng.exponential(1.0 / lam[active])
        seen = when <= age[active]
        later = ~seen & (when <= age[active] + HORIZON)
        x[active[seen]] += 1
        t_x[active[seen]] = when[seen]
        future[active[later]] += 1
        now[active] = when
        leaves = rng.random(active.size) < drop[active]
        alive[active[leaves & seen]] = False
        active = active[~leaves & (seen | later)]
    nu = rng.gamma(SPEND["q"], 1.0 / SPEND["v"], n)
    spend = np.where(x > 0, rng.gamma(SPEND["p"] * np.maximum(x, 1), 1.0 / (nu * np.maximum(x, 1))), 0.0)
    return {"frequency": x, "recency": t_x, "T": age, "monetary": spend, "future": future, "alive": alive}


def ensure_data(n: int) -> Path:
    import numpy as np

    path = DATA / f"bgnbd-{n}.npz"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        np.savez(path, **simulate(n, seed=n))
    return path


def run_fit(data: str, max_rows: int | None, pred: str | None = None) -> dict[str, Any]:
    """Fit BG/NBD and Gamma-Gamma, predict for every customer, check against the simulated truth."""
    import numpy as np

    from models.clv import BetaGeo, GammaGamma

    arrays = np.load(data)
    x, t_x, age = arrays["frequency"], arrays["recency"], arrays["T"]
    started = time.perf_counter()
    model = BetaGeo(max_rows=max_rows).fit(x, t_x, age, seed=0)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    p_alive = model.p_alive(x, t_x, age)
    expected = model.expected_purchases(HORIZON, x, t_x, age)
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    spend = GammaGamma().fit(x, arrays["monetary"])
    gg_fit_s = time.perf_counter() - started
    started = time.perf_counter()
    spend.expected_spend(x, arrays["monetary"])
    gg_predict_s = time.perf_counter() - started
    if pred:
        np.save(f"{pred}-p_alive.npy", p_alive)
        np.save(f"{pred}-expected.npy", expected)
    future, alive = arrays["future"], arrays["alive"]
    decile = np.digitize(expected, np.quantile(expected, np.linspace(0.1, 0.9, 9)))
    # per decile of the prediction: (mean predicted - mean simulated) in standard errors of the latter
    gaps = [
        (expected[g].mean() - future[g].mean()) / (future[g].std(ddof=1) / np.sqrt(g.sum()))
        for g in (decile == d for d in range(10))
    ]
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "gg_fit_s": gg_fit_s,
        "gg_predict_s": gg_predict_s,
        "params": model.params_,
        "fit_info": model.fit_info_,
        "gg_params": spend.params_,
        "mean_p_alive": float(p_alive.mean()),
        "share_alive": float(alive.mean()),
        "p_alive_auc": _roc_auc(alive, p_alive),
        "mean_expected": float(expected.mean()),
        "mean_future": float(future.mean()),
        "worst_decile_z": float(max(gaps, key=abs)),
    }


def _roc_auc(y: Any, score: Any) -> float:
    """Mann-Whitney ROC AUC with tied scores sharing their mean rank (P(alive) = 1 for every customer
    without a repeat purchase); here rather than scikit-learn so its import stays out of peak RSS."""
    import numpy as np

    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    mean_rank = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((mean_rank[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def run_floor(data: str) -> dict[str, Any]:
    import numpy as np

    from models.clv import BetaGeo

    started = time.perf_counter()
    arrays = np.load(data)
    x, t_x, age = (np.array(arrays[k]) for k in ("frequency", "recency", "T"))
    read_s = time.perf_counter() - started
    model = BetaGeo.from_params(**TRUTH)
    started = time.perf_counter()
    model.log_likelihood(x, t_x, age)
    return {"read_s": read_s, "loglik_s": time.perf_counter() - started}


# --------------------------------------------------------------------------- PyMC-Marketing


def pymc_child(data: str, pred: str) -> None:
    """Runs under the PyMC interpreter (``python -m bench.clv pymc DATA PRED``); prints one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    import numpy as np
    import pandas as pd
    import pymc
    import pymc_marketing
    import pytensor
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel

    import_s = time.perf_counter() - started
    arrays = np.load(data)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(len(arrays["frequency"])),
            "frequency": arrays["frequency"],
            "recency": arrays["recency"],
            "T": arrays["T"],
        }
    )
    fits = []
    for _ in range(PYMC_FITS):
        started = time.perf_counter()
        model = BetaGeoModel(model_config={k: Prior("HalfFlat") for k in TRUTH})
        model.fit(data=frame, method="map", progressbar=False)
        fits.append(time.perf_counter() - started)
    posterior = model.idata.posterior
    params = {k: float(posterior[k].values.ravel()[0]) for k in TRUTH}
    started = time.perf_counter()
    p_alive = model.expected_probability_alive(data=frame).values.ravel()
    expected = model.expected_purchases(data=frame, future_t=HORIZON).values.ravel()
    predict_s = time.perf_counter() - started
    np.save(f"{pred}-p_alive.npy", p_alive)
    np.save(f"{pred}-expected.npy", expected)
    peak = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    versions = {m.__name__: m.__version__ for m in (pymc_marketing, pymc, pytensor)}
    print(
        json.dumps(
            {
                "import_s": import_s,
                "fit_s": fits,
                "predict_s": predict_s,
                "params": params,
                "peak_rss_mb": peak,
                "versions": versions,
            }
        )
    )


def run_pymc(python: str, data: Path, pred: Path, compiledir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTENSOR_FLAGS": f"compiledir={compiledir}"}
    started = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "bench.clv", "pymc", str(data), str(pred)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
        timeout=3600,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def agreement(ours: dict[str, str], theirs: str, params: dict[str, float], data: Path) -> dict[str, Any]:
    """PyMC's predictions against each of our fits (``ours``: label -> prediction prefix), and against
    our formulas at PyMC's own parameters, which separates formula agreement from the optima found."""
    import numpy as np

    from models.clv import BetaGeo

    arrays = np.load(data)
    args = (arrays["frequency"], arrays["recency"], arrays["T"])
    alive = np.load(f"{theirs}-p_alive.npy")
    expected = np.load(f"{theirs}-expected.npy")
    at_theirs = BetaGeo.from_params(**params)
    versus = {
        label: (np.load(f"{prefix}-p_alive.npy"), np.load(f"{prefix}-expected.npy"))
        for label, prefix in ours.items()
    }
    versus["same params"] = (at_theirs.p_alive(*args), at_theirs.expected_purchases(HORIZON, *args))
    return {
        "mean_p_alive": float(alive.mean()),
        "mean_expected": float(expected.mean()),
        "p_alive_max_abs_diff": {k: float(np.max(np.abs(alive - a))) for k, (a, _) in versus.items()},
        "expected_max_rel_diff": {
            k: float(np.max(np.abs(expected - e) / np.maximum(e, 1e-12))) for k, (_, e) in versus.items()
        },
    }


# --------------------------------------------------------------------------- the suite


def _params(p: dict[str, float]) -> str:
    return " / ".join(f"{p[k]:.3g}" for k in TRUTH)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ours_row(n: int, label: str, m: Any, floor: dict[str, float]) -> str:
    r, ll = m.result, floor["loglik_s"]
    return _row(
        [
            f"{n:,}",
            f"{MAX_ROWS:,} (seeded sample)" if label == "sample" else "all",
            f"{r['fit_s']:.2f}",
            f"{r['predict_s']:.2f}",
            f"{n / r['predict_s']:,.0f}",
            f"{m.peak_rss_mb:,.0f}",
            f"{floor['read_s']:.3f} / {ll:.3f}",
            f"{r['fit_s'] / ll:.0f}x",
            f"{r['predict_s'] / ll:.1f}x",
            _params(r["params"]),
            f"{r['mean_p_alive']:.3f} vs {r['share_alive']:.3f}",
            f"{r['p_alive_auc']:.3f}",
            f"{r['mean_expected']:.3f} vs {r['mean_future']:.3f} ({r['worst_decile_z']:+.1f} SE)",
            f"{r['gg_fit_s']:.2f} / {r['gg_predict_s']:.3f}",
        ]
    )


def _diffs(d: dict[str, float]) -> str:
    return " / ".join(f"{d[k]:.1e}" if k in d else "-" for k in ("all", "sample", "same params"))


def _pymc_row(n: int, process: str, out: dict[str, Any]) -> str:
    if "error" in out:
        return _row([f"{n:,}", process, f"failed: `{out['error']}`", *["-"] * 9])
    agree = out["agreement"]
    return _row(
        [
            f"{n:,}",
            process,
            f"{out['import_s']:.1f}",
            f"{out['fit_s'][0]:.1f}",
            f"{out['fit_s'][1]:.1f}",
            f"{out['predict_s']:.2f}",
            f"{out['peak_rss_mb']:,.0f}",
            _params(out["params"]),
            f"{agree['mean_p_alive']:.4f}",
            _diffs(agree["p_alive_max_abs_diff"]),
            f"{agree['mean_expected']:.4f}",
            _diffs(agree["expected_max_rel_diff"]),
        ]
    )


OURS_HEAD = [
    "| customers | fit on | fit s | predict s (P(alive) + E[purchases 90 d]) | customers/s predicted "
    "| peak MB | floor: read s / log-lik s | fit / log-lik | predict / log-lik | r / alpha / a / b "
    "(truth 0.75 / 40 / 0.8 / 2.5) | mean P(alive) vs share alive | P(alive) ROC AUC (alive) "
    "| mean E[purchases 90 d] vs simulated (worst decile of the prediction, in SE) "
    "| Gamma-Gamma fit s / predict s |",
    "|---:|---|---:|---:|---:|---:|---|---:|---:|---|---|---:|---|---|",
]
PYMC_HEAD = [
    "| customers | process | import s | fit 1 s | fit 2 s | predict s | peak MB | r / alpha / a / b "
    "| mean P(alive) | max abs diff P(alive) vs scipy: all rows / sample / same params | mean E[purchases] "
    "| max rel diff E[purchases] vs scipy: all rows / sample / same params |",
    "|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|---|",
]


def main(sizes: list[int]) -> str:
    python = os.environ.get(PYMC_ENV)
    records: list[dict[str, Any]] = []
    ours_md, pymc_md = list(OURS_HEAD), list(PYMC_HEAD)
    versions = ""
    loads: list[str] = []
    for n in sizes:
        data = ensure_data(n)
        load = os.getloadavg()[0]  # the machine is shared: how busy it was as this size started
        loads.append(f"{n:,}: {load:.2f}")
        floor = measure("bench.clv:run_floor", data=str(data))
        record: dict[str, Any] = {"customers": n, "load_1min": load, "floor": floor.result, "fits": {}}
        record["pymc"] = {}
        fits = {"sample": MAX_ROWS, "all": None} if n > MAX_ROWS else {"all": None}
        preds = {label: str(DATA / f"pred-{n}-{label}") for label in fits}
        for label, max_rows in fits.items():
            m = measure("bench.clv:run_fit", data=str(data), max_rows=max_rows, pred=preds[label])
            record["fits"][label] = {**m.result, "wall_s": m.wall_s, "peak_rss_mb": m.peak_rss_mb}
            ours_md.append(_ours_row(n, label, m, floor.result))
        if python:
            cache = Path(tempfile.mkdtemp(prefix="bench-clv-pytensor-"))
            try:
                for process in ("cold cache", "kept cache"):
                    out = run_pymc(python, data, DATA / f"pymc-{n}", cache)
                    if "error" not in out:
                        out["agreement"] = agreement(preds, str(DATA / f"pymc-{n}"), out["params"], data)
                        versions = ", ".join(f"{k} {v}" for k, v in out["versions"].items())
                    record["pymc"][process] = out
                    pymc_md.append(_pymc_row(n, process, out))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        records.append(record)
        print(record, flush=True)
    notes = " ".join(__doc__.split("\n\n", 1)[1].split())
    notes += f" One-minute load average (2 cores) as each size started: {'; '.join(loads)}."
    if python:
        pymc_head = (
            f"\nPyMC-Marketing ({versions or 'no successful run'}; interpreter `{python}`), same customers. "
            "*fit 1 / fit 2*: two fits in one process (the first builds and compiles the model); "
            "*cold cache*: pytensor's compile directory starts empty; *kept cache*: a new process reusing "
            "it. Differences: against the scipy fit on all rows, on the 200,000-customer sample "
            "(1,000,000 only), and our formulas evaluated at PyMC's own parameters.\n"
        )
        tables = [*ours_md, pymc_head, *pymc_md]
    else:
        skipped = f"\nPyMC-Marketing: not run (set {PYMC_ENV} to the python of a venv with pymc-marketing)."
        tables = [*ours_md, skipped]
    return report("clv", records, notes, tables, title="CLV (BG/NBD, Gamma-Gamma)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pymc"]:
        pymc_child(sys.argv[2], sys.argv[3])
