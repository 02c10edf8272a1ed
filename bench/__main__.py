"""`python -m bench [SUITE ...] [--sizes 10000,100000,1000000]`: run benchmark suites, update RESULTS.md."""

from __future__ import annotations

import argparse

SUITES = (
    "generate",
    "extract",
    "transform",
    "segment",
    "content",
    "content-drafting",
    "e2e",
    "clv",
    "nba",
    "experiments",
    "alerts",
    "api",
    "ondemand",
    "onboard",
    "voc",
    "recommend",
    "prefect-start",
    "gates",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", default=list(SUITES), choices=SUITES, help="which suites [all]")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="contacts per run, comma-separated")
    parser.add_argument("--formats", default="parquet,csv", help="generate: output formats")
    parser.add_argument("--extract-sources", default="parquet,postgres", help="extract: source kinds")
    parser.add_argument(
        "--shop-sizes", default="100000,1000000", help="segment: sizes of the transactions-only shop"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]  # e2e with --sizes "": only re-render
    if "generate" in args.suites:
        from bench import generate

        print(generate.main(sizes, args.formats.split(",")))
    if "extract" in args.suites:
        from bench import extract

        print(extract.main(sizes, args.extract_sources.split(",")))
    if "transform" in args.suites:
        from bench import transform

        print(transform.main(sizes))
    if "segment" in args.suites:
        from bench import segment

        print(segment.main(sizes, shop_sizes=[int(s) for s in args.shop_sizes.split(",") if s]))
    if "content" in args.suites:
        from bench import content

        print(content.main())  # the drafting path and the greedy micro-benchmark
    elif "content-drafting" in args.suites:
        from bench import content

        print(
            content.drafting_main()
        )  # the real drafting path alone  # no data size: the language model's load and generation throughput
    if "e2e" in args.suites:
        from bench import e2e

        print(e2e.main(sizes))  # `clarion run` end to end, stage by stage, and an incremental rerun
    if "clv" in args.suites:
        from bench import clv

        print(clv.main(sizes))  # BG/NBD + Gamma-Gamma on simulated customers; PyMC-Marketing if configured
    if "nba" in args.suites:
        from bench import bench_nba

        print(bench_nba.main(sizes))  # next best action x 5 campaigns against one SQL pass
    if "experiments" in args.suites:
        from bench import experiments

        print(experiments.main(sizes))  # results statistics and the uplift learner on simulated customers
    if "alerts" in args.suites:
        from bench import alerts

        print(alerts.main(sizes))  # gathering a run's alerts (fairness figures) and delivering one
    if "api" in args.suites:
        from bench import api

        print(api.main(sizes))  # customer lookups through the REST API, idle and while a writer publishes
    if "ondemand" in args.suites:
        from bench import ondemand

        print(ondemand.main())  # one on-demand draft's latency with the model warm (no data size)
    if "onboard" in args.suites:
        from bench import onboard

        print(onboard.main(sizes))  # clarion init and an extract through SQL mappings
    if "voc" in args.suites:
        from bench import voc

        print(voc.main())  # tickets scrubbed, embedded, clustered (sizes in tickets, not customers)
    if "recommend" in args.suites:
        from bench import recommend

        print(recommend.main(sizes))  # evaluation, fit and top 5 with reasons for every customer
    if "gates" in args.suites:
        from bench import gates

        print(gates.main())  # the raw and marts gates against 0 to 1,000 earlier validation results
    if "prefect-start" in args.suites:
        from bench import prefect_start

        print(prefect_start.main([n for n in sizes if n <= 10_000] or [2000]))  # temporary vs kept server


if __name__ == "__main__":
    main()
