"""Serving replicas behind client-side round robin: three servers on loopback, one killed with
SIGKILL under load and started again; the retry policy keeps every call answered, and the load
spreads over the survivors and then over all three again."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import urllib.request

import grpc
import pytest

from conftest import LiveServer
from movierec.client.connect import channel, resolve_target
from movierec.client.loadtest import free_port, spawn_server
from movierec.errors import ConfigError
from movierec.server.v1 import recommender_pb2 as pb
from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

OK_CALLS = re.compile(r'^movierec_requests_total\{code="OK",method="Recommend"\} (\S+)$', re.M)


def answered(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    found = OK_CALLS.search(text)
    return float(found.group(1)) if found else 0.0


def own_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("this machine has no address besides loopback")
        address = probe.getsockname()[0]
    if address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("this machine has no address besides loopback")
    return address


def test_a_worker_sharing_its_port_takes_no_connection_while_it_loads(bundle_root, monkeypatch):
    """With --workers the kernel hands each new connection to one of the processes bound to the
    port: a worker binds it only once its bundle is loaded, so no call lands on one that cannot
    answer yet."""
    import asyncio

    from movierec.server.app import BundleHolder, ServerConfig

    loading, release, started = threading.Event(), threading.Event(), {}
    load = BundleHolder.load

    async def held_load(self):
        loading.set()
        await asyncio.to_thread(release.wait, 60)
        await load(self)

    monkeypatch.setattr(BundleHolder, "load", held_load)
    port = free_port()
    config = ServerConfig(bundles=bundle_root, address=f"127.0.0.1:{port}", metrics_port=0, watch_interval=0,
                          reuse_port=True)
    starter = threading.Thread(target=lambda: started.update(live=LiveServer(config)))
    starter.start()
    try:
        assert loading.wait(60)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0   # refused: nothing takes connections yet
    finally:
        release.set()
        starter.join(120)
    live = started["live"]
    try:
        with grpc.insecure_channel(live.target) as served:
            reply = pb_grpc.RecommenderStub(served).Recommend(pb.RecommendRequest(user_id=1, n=5), timeout=10)
        assert len(reply.items) == 5
    finally:
        live.stop()


def test_metrics_stay_on_loopback_unless_an_address_is_given(bundle_root):
    from movierec.server.app import ServerConfig

    address = own_address()
    for metrics_address, reachable in (("127.0.0.1", False), ("0.0.0.0", True)):
        port = free_port()
        live = LiveServer(ServerConfig(bundles=bundle_root, address="127.0.0.1:0", metrics_port=port,
                                       metrics_address=metrics_address, watch_interval=0))
        try:
            if reachable:
                page = urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5).read().decode()
                assert "movierec_requests_total" in page
            else:
                with pytest.raises(OSError):
                    urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5)
        finally:
            live.stop()


def test_a_list_of_replicas_is_one_round_robin_target():
    assert resolve_target("localhost:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert resolve_target("dns:///movierec:50051") == "dns:///movierec:50051"
    assert resolve_target("127.0.0.1:50051") == "127.0.0.1:50051"
    with pytest.raises(ConfigError, match="host:port"):
        resolve_target("127.0.0.1:1,nope")


def test_replicas_ride_out_a_kill_9_and_spread_the_load(bundle_root, tmp_path):
    ports = [free_port() for _ in range(3)]
    metrics = [free_port() for _ in range(3)]
    servers = [spawn_server(bundle_root, tmp_path / f"replica{i}.log", port=port, metrics_port=metric)[0]
               for i, (port, metric) in enumerate(zip(ports, metrics))]
    target = ",".join(f"127.0.0.1:{port}" for port in ports)
    failures, calls, stop = [], [0], threading.Event()

    def load():
        with channel(target) as connection:
            stub = pb_grpc.RecommenderStub(connection)
            while not stop.is_set():
                try:
                    stub.Recommend(pb.RecommendRequest(user_id=7, n=10), timeout=10)
                    calls[0] += 1
                except grpc.RpcError as exc:
                    failures.append(exc.code().name)

    def spread(seconds: float) -> list[float]:
        before = [answered(m) if s.poll() is None else 0.0 for s, m in zip(servers, metrics)]
        time.sleep(seconds)
        return [(answered(m) if s.poll() is None else 0.0) - b for s, m, b in zip(servers, metrics, before)]

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        everyone = spread(2.0)
        servers[1].send_signal(signal.SIGKILL)
        servers[1].wait(timeout=30)
        time.sleep(0.5)
        survivors = spread(2.0)
        servers[1] = spawn_server(bundle_root, tmp_path / "replica1.log", port=ports[1], metrics_port=metrics[1])[0]
        time.sleep(3.0)    # the clients reconnect within their backoff
        again = spread(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
    print(f"calls {calls[0]}; per replica: all up {everyone}, one killed {survivors}, back {again}")
    assert failures == [] and calls[0] > 100
    assert min(everyone) > 0
    assert survivors[1] == 0 and survivors[0] > 0 and survivors[2] > 0
    assert min(again) > 0
