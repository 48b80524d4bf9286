"""`movierec bench`: the latency benchmark, printed as tables."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from movierec.client.bench import BenchConfig, BenchFailed, failed_runs, run_bench

from .common import console, err_console

PERCENTILE_COLUMNS = ("p50", "p90", "p95", "p99", "p99.9", "max")


def latency_table(report: dict, mode: str, floor: bool) -> Table:
    table = Table(title=f"latency (ms), {mode}")
    table.add_column("call")
    for column in PERCENTILE_COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("req/s", justify="right")
    table.add_column("errors", justify="right")
    rows = [("Recommend", report["recommend"])] + ([("health (floor)", report["floor"])] if floor else [])
    for name, summary in rows:
        if not summary["count"]:
            table.add_row(name, *["-"] * len(PERCENTILE_COLUMNS), "0", str(summary["errors"]))
            continue
        table.add_row(name, *[f"{summary[f'{c}_ms']:.2f}" for c in PERCENTILE_COLUMNS], f"{summary['throughput']:.0f}",
                      str(summary["errors"]) + (f" {summary['codes']}" if summary["errors"] else ""))
    return table


def sweep_table(rows: list[dict]) -> Table:
    best = max(rows, key=lambda row: row["recommend"]["throughput"])["concurrency"]
    table = Table(title="closed-loop sweep (ms); * = the most Recommend throughput")
    for column in ("in flight", "Recommend p50", "p99", "req/s", "floor p50", "floor req/s", "p50 / floor"):
        table.add_column(column, justify="right")
    for row in rows:
        rec, flo = row["recommend"], row["floor"]
        if not rec["count"] or not flo["count"]:
            table.add_row(str(row["concurrency"]), *["-"] * 6)
            continue
        table.add_row(f"{row['concurrency']}{' *' if row['concurrency'] == best else ''}",
                      f"{rec['p50_ms']:.2f}", f"{rec['p99_ms']:.2f}", f"{rec['throughput']:.0f}",
                      f"{flo['p50_ms']:.2f}", f"{flo['throughput']:.0f}", f"{row['p50_ratio_to_floor']:.2f}")
    return table


def bench(config: BenchConfig):
    """Latency benchmark: percentiles, throughput, errors, server stages, the gRPC floor, in-process timings."""
    try:
        report = run_bench(config, say=console.print)
    except BenchFailed as exc:
        err_console.print(f"[bold red]bench failed:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(latency_table(report, config.mode, config.floor))
    if "p50_ratio_to_floor" in report:
        console.print(f"Recommend p50 / floor p50 = {report['p50_ratio_to_floor']:.2f}")
    if config.sweep:
        console.print(sweep_table(report["sweep"]))
    recommend = report["recommend"]
    stages = recommend.get("server_stages_ms")
    if stages:
        console.print("server stages (ms, p50 / p99): " + ", ".join(
            f"{k} {v['p50']:.3f} / {v['p99']:.3f}" for k, v in stages.items()))
    console.print(f"client CPU: {recommend['client_cpu_share_of_a_core']:.0%} of a core over {config.processes} processes")
    if "precomputed_share" in recommend:
        console.print(f"answered from the offline rankings: {recommend['precomputed_share']:.0%} of requests; "
                      f"given a kept answer (no stage run, stage times 0): {recommend['cached_share']:.0%}")
    in_process = report.get("in_process", {})
    for name in ("served", "online"):
        if name in in_process:
            part = in_process[name]
            console.print(f"in-process {name} (µs, p50 / p99; {part['precomputed_share']:.0%} precomputed, "
                          f"~{in_process['mean_candidates_known_users']:.0f} candidates online): " + ", ".join(
                              f"{k} {v['p50']:.0f} / {v['p99']:.0f}" for k, v in part["stages_us"].items()))
    console.print(f"wrote {config.out / 'bench.json'} and {config.out / 'latency.png'}")
    failed = failed_runs(report)
    for line in failed:
        err_console.print(f"[bold red]bench failed:[/] {escape(line)}")
    if recommend["not_sent"]:
        err_console.print(f"[yellow]the client fell behind: {recommend['not_sent']:,} scheduled calls were not sent[/]")
    if failed:
        raise typer.Exit(1)
