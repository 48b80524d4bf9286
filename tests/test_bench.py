import json

from typer.testing import CliRunner

from movierec.cli import app


def test_bench_runs_briefly_and_reports_sane_fields(bundle_root, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--spawn", "--bundles", str(bundle_root), "--duration", "2",
                                      "--warmup", "0.5", "--concurrency", "4", "--processes", "1",
                                      "--in-process-requests", "100", "--sweep", "2,1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    recommend, floor = report["recommend"], report["floor"]
    for summary in (recommend, floor):
        assert summary["count"] > 0 and summary["errors"] == 0 and summary["codes"] == {"OK": summary["count"]}
        assert 0 < summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["p99.9_ms"] <= summary["max_ms"]
        assert summary["throughput"] > 0 and summary["client_cpu_seconds"] > 0
    stages = recommend["server_stages_ms"]
    assert set(stages) == {"recall", "rank", "blend", "total"}
    assert stages["total"]["p50"] >= stages["blend"]["p50"]
    assert report["p50_ratio_to_floor"] > 0
    in_process = report["in_process"]
    assert in_process["requests"] == 100 and in_process["mean_candidates_known_users"] > 100
    served, online = in_process["served"], in_process["online"]
    assert online["precomputed_share"] == 0 and served["stages_us"]["total"]["p50"] > 0
    # the default mix: 80% known users without context, answered from the bundle's rankings
    assert 0.6 < served["precomputed_share"] < 0.95
    assert online["stages_us"]["rank"]["p50"] > 0 and online["stages_us"]["total"]["p50"] > 0
    assert 0.6 < recommend["precomputed_share"] < 0.95
    # requests drawn again (943 users, thousands of calls) get the answer their worker kept,
    # except those with recent items (a tenth of the mix, drawn at random)
    assert 0.5 < recommend["cached_share"] < 0.95
    assert [row["concurrency"] for row in report["sweep"]] == [1, 2]
    for row in report["sweep"]:
        assert row["recommend"]["count"] > 0 and row["floor"]["count"] > 0 and row["recommend"]["errors"] == 0
        assert row["p50_ratio_to_floor"] == row["recommend"]["p50_ms"] / row["floor"]["p50_ms"]
    assert "closed-loop sweep" in result.output
    assert (out / "latency.png").stat().st_size > 1000


def test_closed_loop_calls_are_split_exactly_over_client_processes():
    from movierec.client.loadtest import calls_in_flight

    for concurrency, processes in ((1, 1), (4, 2), (5, 2), (7, 3), (16, 4)):
        shares = [calls_in_flight(concurrency, processes, w) for w in range(processes)]
        assert sum(shares) == concurrency and max(shares) - min(shares) <= 1


def test_bench_argument_errors(bundle_root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "--bundles", str(bundle_root)])
    assert result.exit_code == 2 and "exactly one of --target" in result.output
    result = runner.invoke(app, ["bench", "--spawn", "--bundles", str(bundle_root), "--new-users", "0.8",
                                 "--with-recent", "0.5"])
    assert result.exit_code == 2 and "shares" in result.output
    result = runner.invoke(app, ["bench", "--spawn", "--bundles", str(bundle_root), "--sweep", "4,zero"])
    assert result.exit_code == 2 and "--sweep" in result.output
    result = runner.invoke(app, ["bench", "--target", "127.0.0.1:1", "--bundles", str(tmp_path)])
    assert result.exit_code == 2 and "no current bundle" in result.output
