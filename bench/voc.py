"""Voice of the customer: how fast tickets are embedded (MiniLM on the CPU) and clustered.

Tickets are those of a generated CRM (their subject and body, scrubbed with the writer's names,
done once before the runs), repeated to the size asked. Each step runs in a fresh process
(bench.harness): *embed* (batches of 64, sorted by length, as the stage does; the model's load not
counted); *topics + sentiment* (k-means for k 4..12 with silhouettes, c-TF-IDF names, the
classifier's regularisation by 5-fold CV and its fit) on the embeddings. The floor is the tokeniser
alone on the same batches: the part of embedding that is not the model. Sizes are tickets, not
customers (a customer writes about 0.65 tickets in the CRM's three years), so a million customers
is about 650,000 tickets: at the rates below a first run embeds for hours, and daily runs embed
only new tickets (the cache).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import measure, write_section

DATA = Path(tempfile.gettempdir()) / "clarion-bench-voc"
SIZES = (250, 1000, 4000)


def texts_file() -> Path:
    """Scrubbed ticket texts (one per line, newlines as \\u2028) and labels of a 3,000-customer CRM."""
    import pyarrow.parquet as pq

    from clarion.config import GenerateSettings
    from clarion.synth.generator import generate
    from clarion.voc.scrub import scrub_ticket

    out = DATA / "tickets.txt"
    if out.exists():
        return out
    crm = DATA / "crm"
    generate(GenerateSettings(customers=3000, seed=7, defects=0.0, format="parquet"), out=crm)
    t = pq.read_table(crm / "support_tickets.parquet").to_pandas()
    c = pq.read_table(crm / "contacts.parquet").to_pandas().set_index("contact_id")
    lines = []
    for subject, body, cid, score in zip(
        t["subject"], t["body"], t["contact_id"], t["satisfaction_score"], strict=True
    ):
        text = scrub_ticket(f"{subject}\n{body}", names=(c.loc[cid, "first_name"], c.loc[cid, "last_name"]))
        label = "" if score != score or score is None else str(int(score))
        lines.append(f"{label}\t{text.replace(chr(10), chr(0x2028))}")
    DATA.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def _texts(path: str, n: int) -> tuple[list[str], list[str]]:
    rows = Path(path).read_text().split("\n")
    rows = (rows * (n // len(rows) + 1))[:n]
    labels, texts = zip(*(r.split("\t", 1) for r in rows), strict=True)
    return [t.replace(chr(0x2028), "\n") for t in texts], list(labels)


def run_floor(path: str, n: int) -> dict[str, Any]:
    from models.content.meaning import default_meaning_model

    texts, _ = _texts(path, n)
    tok = default_meaning_model().tokenizer
    order = sorted(range(n), key=lambda i: len(texts[i]))
    start = time.perf_counter()
    for lo in range(0, n, 64):
        tok([texts[i] for i in order[lo : lo + 64]], padding=True, truncation=True, max_length=128)
    return {"seconds": time.perf_counter() - start}


def run_embed(path: str, n: int, out: str) -> dict[str, Any]:
    from models.content.meaning import default_meaning_model

    texts, _ = _texts(path, n)
    model = default_meaning_model()
    model.embed(texts[:8])  # the model's load is not the rate
    order = sorted(range(n), key=lambda i: len(texts[i]))
    x = np.zeros((n, 384), dtype=np.float32)
    start = time.perf_counter()
    for lo in range(0, n, 64):
        idx = order[lo : lo + 64]
        x[idx] = model.embed([texts[i] for i in idx])
    seconds = time.perf_counter() - start
    np.save(out, x)
    return {"seconds": seconds, "tickets_per_s": n / seconds}


def run_topics(path: str, n: int, emb: str) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from models.voc import SentimentClassifier, choose_c, fit_topics, satisfaction_label

    texts, labels = _texts(path, n)
    x = np.load(emb)
    start = time.perf_counter()
    with threadpool_limits(1):
        topics = fit_topics(x, texts, 4, 12)
        y = np.array([satisfaction_label(float(s)) if s else None for s in labels], dtype=object)
        scored = np.flatnonzero(y != None)  # noqa: E711
        c = choose_c(x[scored], y[scored])
        SentimentClassifier(c).fit(x[scored], y[scored]).predict_proba(x)
    return {"seconds": time.perf_counter() - start, "k": topics.k}


def main(sizes: list[int] | None = None) -> str:
    path = str(texts_file())
    rows = [
        "| tickets | tokenise floor s | embed s | tickets/s | embed / floor | peak MB "
        "| topics + sentiment s | k |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    loads = []
    for n in sizes or SIZES:
        loads.append(f"{n:,}: {os.getloadavg()[0]:.2f}")
        floor = measure("bench.voc:run_floor", path=path, n=n)
        emb = str(DATA / f"emb-{n}.npy")
        e = measure("bench.voc:run_embed", path=path, n=n, out=emb)
        t = measure("bench.voc:run_topics", path=path, n=n, emb=emb)
        f = floor.result["seconds"]
        rows.append(
            f"| {n:,} | {f:.2f} | {e.result['seconds']:.1f} | {e.result['tickets_per_s']:.1f} | "
            f"{e.result['seconds'] / max(f, 1e-9):.0f}x | {e.peak_rss_mb:,.0f} | {t.result['seconds']:.1f} | "
            f"{t.result['k']} |"
        )
        print(rows[-1], flush=True)
    notes = " ".join(__doc__.split("\n\n", 1)[1].split())
    md = (
        "## Voice of the customer\n\n"
        + notes
        + f" Load average (2 cores): {'; '.join(loads)}.\n\n"
        + "\n".join(rows)
    )
    write_section("voc", md)
    return md


if __name__ == "__main__":
    print(main())
