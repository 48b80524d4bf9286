"""The defects of the adversarial review, one test each, and a fuzz of raw bytes at every method."""

import json
import logging
import os
import shutil
import signal
import threading
import time

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import LiveServer, certificates, second_version
from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.layout import BundleError, current_version
from movierec.bundle.loader import load_bundle
from movierec.cli import app
from movierec.client.connect import channel as retrying_channel
from movierec.client.loadtest import free_port, spawn_server
from movierec.server.admin import AdminAuth, AdminDenied, peer_is_loopback
from movierec.server.app import ServerConfig, insecure_warning
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

runner = CliRunner()
METHODS = ("/movierec.v1.Recommender/Recommend", "/movierec.v1.Recommender/GetBundleInfo",
           "/movierec.v1.Recommender/ReloadBundle", "/grpc.health.v1.Health/Check",
           "/movierec.v1.Ingest/AddFeedback", "/movierec.v1.Ingest/UpsertItems", "/movierec.v1.Ingest/UpsertUsers")
MALFORMED = {
    "garbage": b"\xff\xfe\xfd\x00garbage\x01\x02",
    "truncated varint": b"\x08\xff",
    "bad length": b"\x1a\x05ab",
}
# a string field with invalid UTF-8, in each method's own message (GetBundleInfo's has no fields)
BAD_UTF8 = {method: message.SerializeToString().replace(b"x", b"\xff") for method, message in (
    (METHODS[0], pb.RecommendRequest(filters=pb.Filters(include_genres=["x"]))),
    (METHODS[2], pb.ReloadBundleRequest(version="x")),
    (METHODS[3], health_pb2.HealthCheckRequest(service="x")))}


def raw_call(target: str, method: str, payload: bytes, timeout: float = 10):
    """(status code, details) of one call with `payload` as the request's bytes."""
    with grpc.insecure_channel(target) as connection:
        call = connection.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(payload, timeout=timeout)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""


def counted(server, method: str, code: str) -> float:
    return server.running.metrics.requests.labels(method, code)._value.get()


# 1 -------------------------------------------------------------------------------------------


def test_malformed_messages_get_invalid_argument_a_count_and_no_traceback(server, caplog):
    caplog.set_level(logging.WARNING)
    before = counted(server, "Recommend", "INVALID_ARGUMENT")
    for method in METHODS:
        for payload in [*MALFORMED.values(), *([BAD_UTF8[method]] if method in BAD_UTF8 else [])]:
            code, details = raw_call(server.target, method, payload)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, payload, code, details)
            assert details == "malformed request message"
    for _ in range(46):
        assert raw_call(server.target, METHODS[0], MALFORMED["garbage"])[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert counted(server, "Recommend", "INVALID_ARGUMENT") - before == 50
    assert counted(server, "GetBundleInfo", "INVALID_ARGUMENT") >= 3
    text = caplog.text
    assert "Traceback" not in text and not any(r.exc_info for r in caplog.records)
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(lines) <= 10  # one a second at most, for 61 calls
    # the server is unharmed
    assert pb_grpc.RecommenderStub(grpc.insecure_channel(server.target)).Recommend(
        pb.RecommendRequest(user_id=1), timeout=10).items


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=300))
def test_random_bytes_never_get_unknown_or_internal(server, method, payload):
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
    if method.endswith("ReloadBundle") or "Ingest" in method:
        allowed.add(grpc.StatusCode.FAILED_PRECONDITION)  # a well-formed name of no bundle; a server without a store
    if method.endswith("Check"):
        allowed.add(grpc.StatusCode.NOT_FOUND)  # a well-formed name of no service
    code, details = raw_call(server.target, method, payload)
    assert code in allowed, (method, payload, code, details)
    with grpc.insecure_channel(server.target) as connection:
        status = health_pb2_grpc.HealthStub(connection).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_survives_a_malformed_stream_message(server):
    with grpc.insecure_channel(server.target) as connection:
        stream = connection.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                          request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            list(stream(iter([MALFORMED["garbage"]]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# 2 -------------------------------------------------------------------------------------------


def test_reload_needs_the_admin_token(served_root, tmp_path):
    token = tmp_path / "admin.token"
    token.write_text("s3cret-token-of-the-operator\n")
    live = LiveServer(ServerConfig(bundles=served_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0,
                                   admin_token_file=token))
    request = pb.ReloadBundleRequest(version="v99999999-000000-second")
    try:
        with grpc.insecure_channel(live.target) as connection:
            stub = pb_grpc.RecommenderStub(connection)
            for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                                   ((("authorization", "Bearer wrong-token-of-someone"),), grpc.StatusCode.PERMISSION_DENIED),
                                   ((("authorization", "Basic s3cret-token-of-the-operator"),), grpc.StatusCode.PERMISSION_DENIED)):
                with pytest.raises(grpc.RpcError) as info:
                    stub.ReloadBundle(request, metadata=metadata, timeout=30)
                assert info.value.code() == code
            assert live.running.metrics.requests.labels("ReloadBundle", "UNAUTHENTICATED")._value.get() == 1
            good = (("authorization", "Bearer s3cret-token-of-the-operator"),)
            assert stub.ReloadBundle(request, metadata=good, timeout=60).version == "v99999999-000000-second"
            assert stub.Recommend(pb.RecommendRequest(user_id=1), timeout=10).items  # not an admin call
        # the CLI sends the token from a file
        result = runner.invoke(app, ["reload", "--target", live.target, "--admin-token-file", str(token)])
        assert result.exit_code == 0 and "now serves bundle" in result.output, result.output
        result = runner.invoke(app, ["reload", "--target", live.target])
        assert result.exit_code == 2 and "UNAUTHENTICATED" in result.output
    finally:
        live.stop()


def test_without_admin_credentials_only_loopback_may_reload():
    class Context:
        def __init__(self, peer):
            self._peer = peer

        def peer(self):
            return self._peer

        def invocation_metadata(self):
            return ()

        def auth_context(self):
            return {}

    for peer in ("ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:/tmp/s"):
        assert peer_is_loopback(peer)
        AdminAuth().check(Context(peer))
    for peer in ("ipv4:10.1.2.3:5555", "ipv6:[2001:db8::1]:5555", "ipv4:127.0.0.1.evil:1"):
        with pytest.raises(AdminDenied) as info:
            AdminAuth().check(Context(peer))
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    # a token configured: loopback is no excuse
    with pytest.raises(AdminDenied) as info:
        AdminAuth(token=b"0123456789abcdef").check(Context("ipv4:127.0.0.1:5555"))
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_network_address_in_plaintext_warns_at_start_up(served_root):
    warning = insecure_warning(ServerConfig(bundles=served_root, address="0.0.0.0:50051"))
    assert "without TLS" in warning and "--allow-insecure" in warning
    assert insecure_warning(ServerConfig(bundles=served_root, address="0.0.0.0:50051", allow_insecure=True)) is None
    assert insecure_warning(ServerConfig(bundles=served_root, address="127.0.0.1:50051")) is None
    assert insecure_warning(ServerConfig(bundles=served_root, address="[::1]:50051")) is None


def test_an_admin_client_certificate_may_reload_and_others_may_not(served_root, tmp_path):
    certs = certificates(tmp_path)
    live = LiveServer(ServerConfig(bundles=served_root, address="127.0.0.1:0", metrics_port=0, watch_interval=0,
                                   tls_cert=certs["server"], tls_key=certs["server_key"],
                                   tls_client_ca=certs["ca"], admin_client_ca=certs["admin_ca"]))
    options = (("grpc.ssl_target_name_override", "localhost"),)
    request = pb.ReloadBundleRequest(version="v99999999-000000-second")

    def stub_for(cert, key):
        credentials = grpc.ssl_channel_credentials(certs["ca"].read_bytes(), certs[key].read_bytes(),
                                                   certs[cert].read_bytes())
        return grpc.secure_channel(live.target, credentials, options)
    try:
        with stub_for("client", "client_key") as connection:
            stub = pb_grpc.RecommenderStub(connection)
            assert stub.Recommend(pb.RecommendRequest(user_id=1), timeout=10).items
            with pytest.raises(grpc.RpcError) as info:
                stub.ReloadBundle(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with stub_for("admin_client", "admin_client_key") as connection:
            assert pb_grpc.RecommenderStub(connection).ReloadBundle(request, timeout=60).version == request.version
    finally:
        live.stop()


# 3 and 7 -------------------------------------------------------------------------------------


def test_bench_against_a_dead_target_fails(bundle_root, tmp_path):
    result = runner.invoke(app, ["bench", "--target", f"127.0.0.1:{free_port()}", "--bundles", str(bundle_root),
                                 "--concurrency", "2", "--duration", "2", "--no-floor", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "does not answer GetBundleInfo (UNAVAILABLE)" in result.output
    assert not (tmp_path / "bench.json").exists()


def test_bench_reports_the_servers_bundle_and_its_failures(server, served_root, tmp_path):
    from movierec.client.bench import failed_runs

    serving = pb_grpc.RecommenderStub(grpc.insecure_channel(server.target)).GetBundleInfo(
        pb.GetBundleInfoRequest(), timeout=10).version
    elsewhere = tmp_path / "other-root"
    shutil.copytree(served_root, elsewhere, symlinks=True)
    os.remove(elsewhere / "current")
    os.symlink("v99999999-000000-second", elsewhere / "current")
    result = runner.invoke(app, ["bench", "--target", server.target, "--bundles", str(elsewhere), "--duration", "1",
                                 "--warmup", "0.2", "--concurrency", "2", "--processes", "1", "--no-floor",
                                 "--in-process-requests", "0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert report["bundle"] == serving and report["mix_bundle"] == "v99999999-000000-second"
    summary = {"failed_share": 0.25, "codes": {"OK": 75, "UNAVAILABLE": 20, "DEADLINE_EXCEEDED": 5}}
    assert failed_runs({"recommend": summary}) == [
        "Recommend: 25.0% of the calls failed (DEADLINE_EXCEEDED 5, UNAVAILABLE 20)"]
    assert failed_runs({"recommend": {**summary, "failed_share": 0.01}}) == []


@pytest.mark.parametrize("args,message", [
    (["--duration", "nan"], "finite"), (["--duration", "inf"], "finite"), (["--warmup", "nan"], "finite"),
    (["--rate", "1e9"], "bounded"), (["--duration", "1e6"], "bounded"), (["--concurrency", "100000"], "bounded"),
])
def test_bench_refuses_unbounded_or_meaningless_runs(bundle_root, args, message):
    result = runner.invoke(app, ["bench", "--spawn", "--bundles", str(bundle_root), *args])
    assert result.exit_code == 2 and message in result.output, result.output


# 4 -------------------------------------------------------------------------------------------


def _copy_version(root, name):
    target = second_version(root, name)
    manifest = json.loads((target / "manifest.json").read_text())
    return target, manifest


@pytest.mark.parametrize("entry", ["../../../../etc/hostname", "/etc/hostname", "sub/../popular.npy", ".hidden"])
def test_manifest_entries_must_be_files_of_the_version(served_root, entry):
    target, manifest = _copy_version(served_root, "vtraversal")
    manifest["checksums"][entry] = "0" * 64
    (target / "manifest.json").write_text(json.dumps(manifest))
    try:
        with pytest.raises(BundleError, match="outside its directory"):
            load_bundle(target)
    finally:
        shutil.rmtree(target)


def test_symlinks_in_a_version_are_refused(served_root, tmp_path):
    target, manifest = _copy_version(served_root, "vsymlinked")
    outside = tmp_path / "outside.npy"
    shutil.copy(target / "popular.npy", outside)
    (target / "popular.npy").unlink()
    os.symlink(outside, target / "popular.npy")
    try:
        with pytest.raises(BundleError, match="symbolic links"):
            load_bundle(target)
    finally:
        shutil.rmtree(target)


def test_refusals_tell_clients_nothing_about_the_servers_files(server, served_root):
    target, manifest = _copy_version(served_root, "vprobe")
    manifest["checksums"]["../../../../etc/hostname"] = "0" * 64
    (target / "manifest.json").write_text(json.dumps(manifest))
    mismatch, manifest = _copy_version(served_root, "vrenamed")
    manifest["version"] = "vsomething-else"
    (mismatch / "manifest.json").write_text(json.dumps(manifest))
    try:
        stub = pb_grpc.RecommenderStub(grpc.insecure_channel(server.target))
        for name in ("vprobe", "vrenamed", "v00000000-missing"):
            with pytest.raises(grpc.RpcError) as info:
                stub.ReloadBundle(pb.ReloadBundleRequest(version=name), timeout=30)
            details = info.value.details()
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert details == f"bundle {name} refused, old one kept (see the server log)"
        with pytest.raises(BundleError, match="not the directory's name"):
            load_bundle(mismatch)
    finally:
        shutil.rmtree(target)
        shutil.rmtree(mismatch)


# 5 -------------------------------------------------------------------------------------------


def test_keep_prunes_only_built_versions_and_keeps_the_rollback(bundle_root, ml100k_dataset, trained_runs, tmp_path):
    root = tmp_path / "bundles"
    shutil.copytree(bundle_root, root, symlinks=True)
    shutil.copytree(current_version(root), root / "vold-manual-backup")  # a copy made by hand, like `cp -a`
    (root / "vendor-notes").mkdir()
    built = [build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, keep=2,
                                       precompute_rankings=False)).version for _ in range(3)]
    names = {p.name for p in root.iterdir()}
    assert {"vold-manual-backup", "vendor-notes", "current", built[-1], built[-2]} == names
    assert os.readlink(root / "current") == built[-1]
    # with --keep 1 the version before `current` still stays, for a rollback
    newest = build_bundle(BuildOptions(ml100k_dataset.path, *trained_runs, root, keep=1,
                                       precompute_rankings=False)).version
    assert {newest, built[-1]} <= {p.name for p in root.iterdir()} and built[-2] not in os.listdir(root)


# 6 -------------------------------------------------------------------------------------------


def test_errors_never_echo_input_of_any_size(stub):
    for request in (pb.RecommendRequest(filters=pb.Filters(include_genres=["G" * 20_000])),
                    pb.RecommendRequest(side_features=pb.SideFeatures(occupation="o" * 20_000), n=999)):
        with pytest.raises(grpc.RpcError) as info:
            stub.Recommend(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(info.value.details()) < 400
    assert "(20004 characters)" in info.value.details() or "n must be" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.ReloadBundle(pb.ReloadBundleRequest(version="v" + "x" * 100_000), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(info.value.details()) < 400


# 8 -------------------------------------------------------------------------------------------


def test_a_changed_dataset_schema_is_a_clear_error(ml100k_dataset, trained_runs, tmp_path):
    from movierec.files import sha256_file

    data = tmp_path / "data"
    shutil.copytree(ml100k_dataset.path, data)
    ratings = pd.read_parquet(data / "ratings.parquet").rename(columns={"rating": "stars"})
    ratings.to_parquet(data / "ratings.parquet", index=False)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["checksums"]["ratings.parquet"] = sha256_file(data / "ratings.parquet")
    (data / "manifest.json").write_text(json.dumps(manifest))
    for args in (["build", "--data", str(data), "--sasrec-run", str(trained_runs[0]), "--ncf-run",
                  str(trained_runs[1]), "--bundles", str(tmp_path / "b")],
                 ["eval", "--data", str(data), "--run-dir", str(trained_runs[0])]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "lacks the column(s) rating" in result.output and "Traceback" not in result.output


# 9 -------------------------------------------------------------------------------------------


def test_the_console_prints_addresses_as_written():
    result = runner.invoke(app, ["recommend", "--target", "localhost:1:x:", "--timeout", "2"])
    assert result.exit_code == 2 and "localhost:1:x:" in result.output and "\u274c" not in result.output


def test_kill_9_under_load_with_the_retry_policy(served_root, tmp_path):
    """Clients with the shipped retry policy ride out a kill -9 and a restart on the same port:
    calls that fail are counted, and none fails once the replacement is serving."""
    port = free_port()
    process, target = spawn_server(served_root, tmp_path / "server.log", port=port)
    outcomes, stop = [], threading.Event()
    lock = threading.Lock()

    def load():
        with retrying_channel(target) as connection:
            stub = pb_grpc.RecommenderStub(connection)
            while not stop.is_set():
                begin = time.monotonic()
                try:
                    stub.Recommend(pb.RecommendRequest(user_id=3, n=10), timeout=5)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    outcomes.append((begin, code))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = time.monotonic()
        process, _ = spawn_server(served_root, tmp_path / "server.log", port=port)
        serving_at = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    failed_during = [code for begin, code in outcomes if killed_at - 5 <= begin < serving_at and code != "OK"]
    after = [code for begin, code in outcomes if begin >= serving_at]
    print(f"kill -9: {len(outcomes)} calls, {len(failed_during)} failed while the server was down "
          f"({serving_at - killed_at:.1f} s to a serving replacement), {len(after)} after, all OK")
    assert after and set(after) == {"OK"}
    assert {code for _, code in outcomes} <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert np.mean([code == "OK" for _, code in outcomes]) > 0.5
