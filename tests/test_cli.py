import json

import pytest
from typer.testing import CliRunner

from conftest import ML100K, ML1M_MOVIES, ML1M_USERS, write_text
from movierec.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands_and_options():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("data", "train", "eval", "quickstart"):
        assert command in result.output
    result = run("train", "sasrec", "--help")
    assert result.exit_code == 0 and "--loss" in result.output and "full softmax" in result.output


def test_data_missing_path_is_a_clear_error(tmp_path):
    result = run("data", "--source", tmp_path / "nope", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "data source not found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_data_reports_malformed_lines_and_strict_writes_nothing(tmp_path):
    root = tmp_path / "ml-1m"
    write_text(root / "users.dat", ML1M_USERS)
    write_text(root / "movies.dat", ML1M_MOVIES)
    write_text(root / "ratings.dat", "1::1::5::1\n1::2::oops::2\n2::1::4::3\n")
    strict = run("data", "--source", root, "--out", tmp_path / "strict", "--strict")
    assert strict.exit_code == 2 and "malformed" in strict.output
    assert not (tmp_path / "strict").exists()
    result = run("data", "--source", root, "--out", tmp_path / "ok")
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "1 malformed" in result.output
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    assert manifest["counts"]["ratings"] == 2


def test_eval_without_a_run_is_a_clear_error(tmp_path, ml1m_dir):
    assert run("data", "--source", ml1m_dir, "--out", tmp_path / "d").exit_code == 0
    result = run("eval", "--data", tmp_path / "d", "--run-dir", tmp_path / "norun")
    assert result.exit_code == 2 and "no SASRec run" in result.output


def test_bad_option_values_are_clear_errors(tmp_path, ml1m_dir):
    assert run("data", "--source", ml1m_dir, "--out", tmp_path / "d").exit_code == 0
    result = run("train", "sasrec", "--data", tmp_path / "d", "--loss", "mse", "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "loss must be one of" in result.output
    for option, value in (("--lr-decay", 0), ("--lr-decay", 1.5), ("--lr-patience", 0)):
        result = run("train", "sasrec", "--data", tmp_path / "d", option, value, "--run-dir", tmp_path / "r")
        assert result.exit_code == 2 and option.lstrip("-").replace("-", "_") in result.output, result.output
    result = run("eval", "--data", tmp_path / "d", "--run-dir", tmp_path / "r", "--stage", "train")
    assert result.exit_code == 2 and "--stage" in result.output
    # a fold to score, one to stop early on and at least one to train on
    result = run("train", "ranker", "--model", "lgbm", "--bundles", tmp_path / "b", "--folds", 2,
                 "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "--folds at least 3" in result.output, result.output
    # a head shorter than the personalized slot's ten would cut items the recall order shows
    result = run("train", "ranker", "--model", "lgbm", "--bundles", tmp_path / "b", "--head", 5,
                 "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "--head 0 or at least 10" in result.output, result.output


@pytest.mark.skipif(not (ML100K / "u.data.gz").is_file(), reason="ML-100K not available")
def test_train_then_eval_end_to_end(tmp_path):
    data_dir = tmp_path / "ml-100k"
    assert run("data", "--source", ML100K, "--out", data_dir).exit_code == 0
    run_dir = tmp_path / "run"
    result = run("train", "sasrec", "--data", data_dir, "--run-dir", run_dir, "--loss", "bce",
                 "--epochs", 2, "--eval-every", 1, "--maxlen", 50, "--hidden", 16)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["device"] in ("cpu", "gpu:0")
    assert metrics["ratings_file"]["path"].endswith("u.data.gz")
    assert set(metrics["test"]) == {"SASRec", "popularity"}
    assert (run_dir / "curves.png").is_file()
    out = tmp_path / "eval.json"
    result = run("eval", "--data", data_dir, "--run-dir", run_dir, "--k", 5, "--k", 20, "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["metrics"]
    for model in ("SASRec", "popularity"):
        for protocol in ("sampled", "full"):
            assert 0.0 <= report[model][protocol]["NDCG@5"] <= report[model][protocol]["HR@20"] <= 1.0
    # user segments: each user counts in exactly one, so the segments' means add up to the whole
    segments = []
    for users in ("1-400", "401-943"):
        out = tmp_path / f"eval-{users}.json"
        assert run("eval", "--data", data_dir, "--run-dir", run_dir, "--users", users, "--json", out).exit_code == 0
        segments.append(json.loads(out.read_text())["metrics"]["SASRec"]["full"]["HR@10"])
    whole = json.loads((run_dir / "metrics.json").read_text())["test"]["SASRec"]["full"]["HR@10"]
    assert (400 * segments[0] + 543 * segments[1]) / 943 == pytest.approx(whole)
    for bad in ("400-1", "x", "5000-6000"):
        result = run("eval", "--data", data_dir, "--run-dir", run_dir, "--users", bad)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    # a second train call resumes: nothing left to do at the same epoch budget
    again = run("train", "sasrec", "--data", data_dir, "--run-dir", run_dir, "--loss", "bce",
                "--epochs", 2, "--eval-every", 1, "--maxlen", 50, "--hidden", 16)
    assert again.exit_code == 0 and "epoch   1" not in again.output
    # a resume may extend the run and anneal it from where it stands
    annealed = run("train", "sasrec", "--data", data_dir, "--run-dir", run_dir, "--loss", "bce",
                   "--epochs", 3, "--eval-every", 1, "--maxlen", 50, "--hidden", 16,
                   "--lr-decay", 0.5, "--lr-patience", 1)
    assert annealed.exit_code == 0, annealed.output
    state = json.loads((run_dir / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3] and state["history"][2]["lr"] == pytest.approx(1e-3)


def test_data_downloads_an_archive_and_reports_unreachable_urls(tmp_path, monkeypatch):
    import functools
    import http.server
    import threading
    import zipfile

    served = tmp_path / "site"
    served.mkdir()
    with zipfile.ZipFile(served / "ml-1m.zip", "w") as zf:
        zf.writestr("ml-1m/users.dat", ML1M_USERS.encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", ML1M_MOVIES.encode("latin-1"))
        zf.writestr("ml-1m/ratings.dat", b"1::1::5::100\n2::2::3::5\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/ml-1m.zip"
        result = run("data", "--source", url, "--out", tmp_path / "d")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "movierec-work" / "downloads" / "ml-1m.zip").is_file()
        assert json.loads((tmp_path / "d" / "manifest.json").read_text())["counts"]["ratings"] == 2
        missing = run("data", "--source", f"http://127.0.0.1:{httpd.server_port}/nope.zip", "--out", tmp_path / "e")
        assert missing.exit_code == 2 and "cannot download" in missing.output
        assert not list((tmp_path / "movierec-work" / "downloads").glob(".nope*"))
    finally:
        httpd.shutdown()


@pytest.mark.skipif(not (ML100K / "u.data.gz").is_file(), reason="ML-100K not available")
def test_quickstart_trains_and_builds_a_bundle_with_the_train_commands_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("quickstart", "--source", ML100K, "--sasrec-epochs", 1, "--ncf-epochs", 1, "--no-serve")
    assert result.exit_code == 0, result.output
    work = tmp_path / "movierec-work"
    sasrec = json.loads((work / "runs" / "sasrec-ml-100k-ce" / "config.json").read_text())
    assert sasrec["loss"] == "ce" and sasrec["epochs"] == 1 and sasrec["hidden"] == 50 and sasrec["lr_decay"] == 1.0
    assert json.loads((work / "runs" / "ncf-ml-100k" / "config.json").read_text())["epochs"] == 1
    assert (work / "bundles" / "current").exists()


def test_only_movierecs_own_errors_are_user_errors():
    import typer

    from movierec.cli.common import handles_errors
    from movierec.errors import ConfigError

    @handles_errors
    def bug():
        raise ValueError("a bug, not bad input")

    @handles_errors
    def bad_input():
        raise ConfigError("--lr must be positive")

    with pytest.raises(ValueError, match="a bug"):
        bug()
    with pytest.raises(typer.Exit) as info:
        bad_input()
    assert info.value.exit_code == 2
