"""Faults under load against a real server process: bundle swaps, corrupt bundles, a killed
build, a soak, an attacker's requests (malformed bytes, admin calls without or with a wrong
token, bundles that reach outside their directory, oversized input) and finally `kill -9` of
the server and a restart on the same port. The load uses the shipped retry policy. Prints
requests sent and failed (by status), swaps done, what was refused and how, the server's RSS
before and after, and the calls that failed around the restart.

    python bench/faults.py --bundles BUNDLE_ROOT --data DATA --sasrec-run RUN --ncf-run RUN \\
        [--duration 300] [--concurrency 8] [--json out.json]

The bundle root is used as it is: new versions are built into it and the corrupt ones are
removed again at the end. Traffic goes to 127.0.0.1 only, and every loop is bounded by
--duration.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import grpc

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.bundle.layout import current_version
from movierec.client.connect import channel as retrying_channel
from movierec.client.loadtest import free_port, spawn_server
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    """Steady closed-loop Recommend calls from threads, counting outcomes by status code."""

    def __init__(self, target: str, concurrency: int, users: list[int]):
        self.target, self.concurrency, self.users = target, concurrency, users
        self.codes: dict[str, int] = {}
        self.versions: set[str] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(concurrency)]

    def run(self, worker: int) -> None:
        with retrying_channel(self.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            k = worker
            while not self.stop.is_set():
                request = pb.RecommendRequest(user_id=self.users[k % len(self.users)], n=10)
                if k % 10 == 0:
                    request.recent_item_ids.extend([1, 2, 3])
                k += self.concurrency
                try:
                    version = stub.Recommend(request, timeout=10).bundle_version
                    code = "OK"
                except grpc.RpcError as exc:
                    code, version = exc.code().name, None
                with self.lock:
                    self.codes[code] = self.codes.get(code, 0) + 1
                    if version:
                        self.versions.add(version)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def corrupt_copies(root: Path) -> list[str]:
    """Two broken versions: a truncated index, and a manifest whose checksum was edited."""
    source = current_version(root)
    names = []
    for name, damage in (("vcorrupt-truncated-index", "truncate"), ("vcorrupt-edited-checksum", "checksum")):
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["version"] = name
        if damage == "truncate":
            index = target / "recall.sasrec.items.index"
            index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
        else:
            manifest["checksums"]["popular.npy"] = "0" * 64
        (target / "manifest.json").write_text(json.dumps(manifest))
        names.append(name)
    return names


MALFORMED = (b"\xff\xfe\xfd\x00garbage\x01\x02", b"\x08\xff", b"\x1a\x05ab")
# invalid UTF-8 in a string field of the method's own message (GetBundleInfo's has none)
BAD_UTF8 = {"Recommend": pb.RecommendRequest(filters=pb.Filters(include_genres=["x"])),
            "ReloadBundle": pb.ReloadBundleRequest(version="x")}
METHODS = ("Recommend", "GetBundleInfo", "ReloadBundle")
PAYLOADS = [(m, p) for m in METHODS for p in MALFORMED] + [
    (m, message.SerializeToString().replace(b"x", b"\xff")) for m, message in BAD_UTF8.items()]


def code_of(call) -> tuple[str, str]:
    try:
        call()
        return "OK", ""
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""


def attacks(target: str, root: Path, token: str) -> dict:
    """The adversarial review's requests, each kind with the status codes it got."""
    out: dict = {}
    with grpc.insecure_channel(target) as connection:
        raw = {m: connection.unary_unary(f"/movierec.v1.Recommender/{m}", request_serializer=None,
                                         response_deserializer=None) for m in METHODS}
        codes: dict[str, int] = {}
        for k in range(200):
            method, payload = PAYLOADS[k % len(PAYLOADS)]
            code, _ = code_of(lambda: raw[method](payload, timeout=10))
            codes[code] = codes.get(code, 0) + 1
        out["malformed_messages"] = codes
        stub = pb_grpc.RecommenderStub(connection)
        reload = pb.ReloadBundleRequest(version=current_version(root).name)
        out["reload_without_token"] = code_of(lambda: stub.ReloadBundle(reload, timeout=30))[0]
        out["reload_wrong_token"] = code_of(lambda: stub.ReloadBundle(
            reload, metadata=(("authorization", "Bearer not-the-token-at-all"),), timeout=30))[0]
        admin = (("authorization", f"Bearer {token}"),)
        refused, leaked = {}, []
        for name, damage in (("vattack-traversal", "traversal"), ("vattack-absolute", "absolute"),
                             ("vattack-symlink", "symlink"), ("vattack-renamed", "renamed")):
            target_dir = root / name
            shutil.copytree(current_version(root), target_dir)
            manifest = json.loads((target_dir / "manifest.json").read_text())
            manifest["version"] = name if damage != "renamed" else "vsomething-else"
            if damage == "traversal":
                manifest["checksums"]["../../../../etc/hostname"] = "0" * 64
            elif damage == "absolute":
                manifest["checksums"]["/etc/hostname"] = "0" * 64
            elif damage == "symlink":
                (target_dir / "popular.npy").unlink()
                (target_dir / "popular.npy").symlink_to("/etc/hostname")
            (target_dir / "manifest.json").write_text(json.dumps(manifest))
            code, details = code_of(lambda: stub.ReloadBundle(pb.ReloadBundleRequest(version=name),
                                                              metadata=admin, timeout=30))
            refused[damage] = code
            if "/" in details or "hostname" in details or "missing" in details or "checksum" in details:
                leaked.append(details)
            shutil.rmtree(target_dir, ignore_errors=True)
        out["outside_bundles"] = refused
        out["details_that_name_files"] = leaked
        code, details = code_of(lambda: stub.Recommend(pb.RecommendRequest(
            filters=pb.Filters(include_genres=["G" * 20_000])), timeout=10))
        out["oversized_input"] = {"code": code, "details_characters": len(details)}
        code, details = code_of(lambda: stub.ReloadBundle(pb.ReloadBundleRequest(version="v" + "x" * 100_000),
                                                          metadata=admin, timeout=10))
        out["oversized_version"] = {"code": code, "details_characters": len(details)}
    return out


def kill_and_restart(root: Path, target: str, server, log: Path, extra: tuple, concurrency: int,
                     users: list[int]) -> tuple[dict, object]:
    """kill -9 the server under load, start a new one on the same port, count what failed."""
    port = int(target.rsplit(":", 1)[1])
    with Load(target, concurrency, users) as load:
        time.sleep(2.0)
        before = dict(load.codes)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        killed = time.time()
        server, _ = spawn_server(root, log, watch_interval=0.5, port=port, extra=extra)
        down = time.time() - killed
        at_restart = dict(load.codes)
        time.sleep(5.0)
        after = dict(load.codes)
    failed_around = {k: at_restart.get(k, 0) - before.get(k, 0) for k in at_restart if k != "OK"}
    failed_after = {k: after.get(k, 0) - at_restart.get(k, 0) for k in after if k != "OK"}
    return {"seconds_to_serving_again": round(down, 2), "failed_while_down": failed_around,
            "failed_after_the_replacement_served": failed_after,
            "calls_after": after.get("OK", 0) - at_restart.get("OK", 0)}, server


def killed_build(options: BuildOptions) -> dict:
    """Start `movierec build` in a process, kill -9 it once its temp dir exists."""
    before = current_version(options.bundles)
    process = subprocess.Popen([sys.executable, "-m", "movierec.cli", "build", "--data", str(options.data_dir),
                                "--sasrec-run", str(options.sasrec_run), "--ncf-run", str(options.ncf_run),
                                "--bundles", str(options.bundles)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(Path(options.bundles).glob(".tmp-*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return {"left_tmp_dirs": len(list(Path(options.bundles).glob(".tmp-*"))),
            "current_unchanged": current_version(options.bundles) == before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--sasrec-run", required=True, type=Path)
    parser.add_argument("--ncf-run", required=True, type=Path)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of steady load (soak)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--swaps", type=int, default=2, help="bundles built and swapped in under load")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    options = BuildOptions(args.data, args.sasrec_run, args.ncf_run, args.bundles, keep=3)
    log = args.bundles.parent / "faults-server.log"
    token = secrets.token_urlsafe(24)
    token_file = args.bundles.parent / "faults-admin.token"
    token_file.write_text(token)
    extra = ("--admin-token-file", str(token_file))
    admin = (("authorization", f"Bearer {token}"),)
    server, target = spawn_server(args.bundles, log, watch_interval=0.5, port=free_port(), extra=extra)
    report: dict = {"target": target}
    try:
        import pandas as pd

        users = pd.read_parquet(current_version(args.bundles) / "users.parquet").raw_id.tolist()
        # warm up, then take the baseline RSS
        with Load(target, args.concurrency, users):
            time.sleep(min(5.0, args.duration / 4))
        report["rss_mb_before"] = rss_mb(server.pid)
        started = time.time()
        with grpc.insecure_channel(target) as channel, Load(target, args.concurrency, users) as load:
            stub = pb_grpc.RecommenderStub(channel)
            swaps = []
            for _ in range(args.swaps):
                version = build_bundle(options).version
                deadline = time.time() + 60
                while stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=5).version != version:
                    if time.time() > deadline:
                        raise RuntimeError(f"server did not pick up {version}")
                    time.sleep(0.2)
                swaps.append(version)
            refused = {}
            for name in corrupt_copies(args.bundles):
                try:
                    stub.ReloadBundle(pb.ReloadBundleRequest(version=name), metadata=admin, timeout=60)
                    refused[name] = "ACCEPTED (bug)"
                except grpc.RpcError as exc:
                    refused[name] = exc.code().name
                shutil.rmtree(args.bundles / name, ignore_errors=True)
            report["killed_build"] = killed_build(options)
            report["attacks"] = attacks(target, args.bundles, token)
            serving = stub.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=5).version
            remaining = args.duration - (time.time() - started)
            if remaining > 0:
                time.sleep(remaining)
        report["rss_mb_after"] = rss_mb(server.pid)
        report.update({
            "seconds": round(time.time() - started, 1),
            "requests": sum(load.codes.values()),
            "by_status": load.codes,
            "failed": sum(v for k, v in load.codes.items() if k != "OK"),
            "swaps": swaps,
            "versions_seen": sorted(load.versions),
            "corrupt_bundles": refused,
            "serving_after_faults": serving,
        })
        # the next build cleans what the killed one left
        report["leftovers_after_next_build"] = build_bundle(options).manifest["cleaned_leftovers"]
        report["kill_9"], server = kill_and_restart(args.bundles, target, server, log, extra, args.concurrency, users)
    finally:
        server.send_signal(signal.SIGTERM)
        report["server_exit_code"] = server.wait(timeout=60)
    report["rss_growth_mb"] = round(report["rss_mb_after"] - report["rss_mb_before"], 1)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
