"""The gRPC server: `movierec.v1.Recommender` on grpc.aio, with health checking, reflection,
Prometheus metrics, hot reload of bundles and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import _async as reflection_async
from grpc_reflection.v1alpha import reflection, reflection_pb2
from threadpoolctl import threadpool_limits
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from movierec.bundle.layout import BundleError, current_version
from movierec.bundle.loader import load_bundle
from movierec.blend.quotas import DEFAULT_SHARES
from movierec.errors import ConfigError, MovieRecError, echo
from movierec.options import option
from movierec.recall.index import IndexConfig, set_search_threads
from movierec.server import guard
from movierec.server.admin import AdminAuth, AdminDenied, is_loopback_host
from movierec.server.fresh import Follower, catch_up
from movierec.server.ingest import SERVICE_NAME as INGEST_NAME, IngestService
from movierec.store.events import EventStore
from movierec.blend.lists import SLOT_POOL
from movierec.server.pipeline import LIST_ORDERS, MAX_LIST, SLOT_ORDERS, Pipeline, RecommendInput, RequestError
from movierec.server.v1 import recommender_pb2 as pb
from movierec.workdir import BUNDLES

log = logging.getLogger("movierec.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recommender"].full_name
HEALTH_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
VERSION_NAME = re.compile(r"^v[0-9A-Za-z-]{1,64}$")
MAX_MESSAGE_BYTES = 1 << 20
SLOT_ENUM = {"popular": pb.SLOT_POPULAR, "new": pb.SLOT_NEW, "personalized": pb.SLOT_PERSONALIZED}
GENDER_NAME = {pb.GENDER_MALE: "M", pb.GENDER_FEMALE: "F", pb.GENDER_UNSPECIFIED: ""}
KEPT_ANSWER_OVERHEAD = 250  # bytes a kept answer costs beyond its own: its key, the bytes object, the dict slot
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ServerError(MovieRecError):
    """The server cannot start as configured."""


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("movierec_requests", "Calls by method and status code", ["method", "code"],
                                registry=self.registry)
        self.latency = Histogram("movierec_request_seconds", "Recommend latency by stage", ["stage"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reloads = Counter("movierec_bundle_reloads", "Bundle loads", ["result"], registry=self.registry)
        self.bundle = Gauge("movierec_bundle_info", "The bundle being served", ["version"], registry=self.registry)
        self.cached_answers = Counter("movierec_cached_answers", "Recommend answers given again from the answers "
                                      "kept for identical earlier requests", registry=self.registry)
        self.events = Counter("movierec_feedback_events", "Feedback events by outcome (accepted, duplicate, "
                              "rejected)", ["outcome"], registry=self.registry)


@dataclass
class Served:
    """What one request uses from start to end: a reload swaps the whole object, never parts."""

    pipeline: Pipeline
    device: str


class BundleHolder:
    """The bundle being served, loaded from the configured root only."""

    def __init__(self, root: Path, metrics: Metrics, pipeline_options: dict | None = None,
                 store: EventStore | None = None):
        self.root = Path(root).resolve()
        self.metrics = metrics
        self.pipeline_options = pipeline_options or {}
        self.store = store  # followed for what it adds to each bundle (server.fresh)
        self.served: Served | None = None
        self.loaded_from: Path | None = None
        self._lock = asyncio.Lock()

    def _resolve(self, version: str) -> Path:
        if not version:
            path = current_version(self.root)
            if path is None:
                raise BundleError(f"{self.root} has no `current` bundle; run `movierec build`")
            return path.resolve()
        if not VERSION_NAME.match(version):
            raise RequestError(f"version must name a bundle directory like v20261124-131500-1a2b, not {echo(version)}")
        path = (self.root / version).resolve()
        if path.parent != self.root or not path.is_dir():
            raise BundleError(f"no bundle {version} under the bundle root")
        return path

    async def load(self, version: str = "") -> Served:
        """Load and verify beside the one being served, then swap; a failure keeps the old one."""
        async with self._lock:
            path = self._resolve(version)
            try:
                bundle = await asyncio.to_thread(load_bundle, path)
                pipeline = await asyncio.to_thread(Pipeline, bundle, **self.pipeline_options)
                if self.store is not None:
                    pipeline.fresh = await asyncio.to_thread(catch_up, pipeline, self.store)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                log.error("bundle %s refused (%s); still serving %s", path.name, exc,
                          self.served.pipeline.bundle.version if self.served else "nothing")
                if isinstance(exc, BundleError):
                    raise
                raise BundleError(f"{path.name}: {type(exc).__name__}: {exc}") from exc
            previous = self.served
            self.served = Served(pipeline, bundle.manifest["index"]["device"])
            self.loaded_from = path
            self.metrics.reloads.labels("ok").inc()
            if previous is not None:
                self.metrics.bundle.remove(previous.pipeline.bundle.version)
            self.metrics.bundle.labels(bundle.version).set(1)
            log.info("serving bundle %s", bundle.version)
            return self.served

    async def watch(self, interval: float) -> None:
        """Reload when `current` points somewhere new; failures are logged and counted."""
        while True:
            await asyncio.sleep(interval)
            path = current_version(self.root)
            if path is not None and path.resolve() != self.loaded_from:
                try:
                    await self.load()
                except (BundleError, RequestError):
                    self.loaded_from = path.resolve()  # do not retry the same broken bundle


def to_input(request: pb.RecommendRequest) -> RecommendInput:
    if len(request.recent_item_ids) > MAX_LIST or len(request.exclude_item_ids) > MAX_LIST:
        raise RequestError(f"recent_item_ids and exclude_item_ids take at most {MAX_LIST} ids each")
    if request.side_features.gender not in GENDER_NAME:
        raise RequestError(f"unknown gender value {request.side_features.gender}")
    shares = None
    if request.HasField("quotas"):
        q = request.quotas
        shares = {"popular": q.popular, "new": q.new, "personalized": q.personalized}
    return RecommendInput(
        user_id=request.user_id,
        n=request.n or 10,
        recent=list(request.recent_item_ids),
        exclude=list(request.exclude_item_ids),
        gender=GENDER_NAME[request.side_features.gender],
        age=request.side_features.age,
        occupation=request.side_features.occupation,
        zip_code=request.side_features.zip_code,
        include_genres=list(request.filters.include_genres),
        exclude_genres=list(request.filters.exclude_genres),
        min_year=request.filters.min_year,
        max_year=request.filters.max_year,
        shares=shares,
        explain=request.explain,
    )


def bundle_info(served: Served) -> pb.BundleInfo:
    bundle = served.pipeline.bundle
    manifest = bundle.manifest
    return pb.BundleInfo(version=bundle.version, users=manifest["counts"]["users"],
                         items=manifest["counts"]["items"], device=served.device,
                         index=str(IndexConfig.from_dict(manifest["index"])), loaded_at_unix=bundle.loaded_at,
                         dataset=manifest["dataset"]["name"])


class RecommenderService:
    """`movierec.v1.Recommender`. Every handler takes a parsed request (server/guard.py parses
    the bytes) and answers with a status code a client can act on, never UNKNOWN or INTERNAL
    for what the client sent; details of refused bundles go to the log, not to the client."""

    def __init__(self, holder: BundleHolder, metrics: Metrics, admin: AdminAuth, answer_cache_mb: float = 0.0):
        self.holder = holder
        self.metrics = metrics
        self.admin = admin
        # Serialised answers to requests whose answer comes from the bundle alone (`Pipeline.answer_key`),
        # for the pipeline and catalogue generation they were made with; the oldest go first when full.
        self.answer_budget = int(answer_cache_mb * 2**20)
        self.answers: dict = {}
        self.answers_of: tuple = (None, -1)
        self.kept_bytes = 0
        self.malformed_log = guard.RateLimitedLog(log)
        # the per-request series, looked up once
        self.stage_latency = {stage: metrics.latency.labels(stage) for stage in ("recall", "rank", "blend", "total")}
        self.ok_requests = metrics.requests.labels("Recommend", "OK")

    async def abort(self, context, method: str, code: grpc.StatusCode, message: str):
        self.metrics.requests.labels(method, code.name).inc()
        await context.abort(code, message)

    async def malformed(self, method: str, context) -> None:
        self.malformed_log.warning("malformed %s request from %s", method, context.peer())
        await self.abort(context, method, grpc.StatusCode.INVALID_ARGUMENT, guard.MALFORMED)

    def handlers(self) -> list:
        """The generic handlers of this service and of the health and reflection services, all
        parsing their requests themselves."""
        health = health_async.HealthServicer()
        reflector = reflection_async.ReflectionServicer((SERVICE_NAME, INGEST_NAME, reflection.SERVICE_NAME,
                                                         HEALTH_NAME))
        self.health = health
        return [
            guard.service(SERVICE_NAME, {
                "Recommend": guard.unary("Recommend", pb.RecommendRequest, pb.RecommendResponse,
                                         self.Recommend, self.malformed),
                "GetBundleInfo": guard.unary("GetBundleInfo", pb.GetBundleInfoRequest, pb.BundleInfo,
                                             self.GetBundleInfo, self.malformed),
                "ReloadBundle": guard.unary("ReloadBundle", pb.ReloadBundleRequest, pb.BundleInfo,
                                            self.ReloadBundle, self.malformed)}),
            guard.service(HEALTH_NAME, {
                "Check": guard.unary("Health.Check", health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse,
                                     health.Check, self.malformed),
                "Watch": guard.unary_stream("Health.Watch", health_pb2.HealthCheckRequest,
                                            health_pb2.HealthCheckResponse, health.Watch, self.malformed)}),
            guard.service(reflection.SERVICE_NAME, {
                "ServerReflectionInfo": guard.stream_stream(
                    "ServerReflectionInfo", reflection_pb2.ServerReflectionRequest,
                    reflection_pb2.ServerReflectionResponse, reflector.ServerReflectionInfo, self.malformed)}),
        ]

    async def Recommend(self, request, context):
        started = time.perf_counter()
        served = self.holder.served
        if served is None:
            await self.abort(context, "Recommend", grpc.StatusCode.UNAVAILABLE, "no bundle loaded yet")
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # The caller has given up already: do not spend the work.
            await self.abort(context, "Recommend", grpc.StatusCode.DEADLINE_EXCEEDED,
                              "deadline passed before the work started")
        pipeline = served.pipeline
        try:
            inp = to_input(request)
        except RequestError as exc:
            await self.abort(context, "Recommend", grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        key = pipeline.answer_key(inp) if self.answer_budget else None
        if key is not None:
            if self.answers_of != (pipeline, pipeline.generation):
                self.answers, self.answers_of, self.kept_bytes = {}, (pipeline, pipeline.generation), 0
            answer = self.answers.get(key)
            if answer is not None:
                self.metrics.cached_answers.inc()
                self.stage_latency["total"].observe(time.perf_counter() - started)
                self.ok_requests.inc()
                return answer
        try:
            result = pipeline.recommend(inp)
        except RequestError as exc:
            await self.abort(context, "Recommend", grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            log.exception("Recommend failed")
            await self.abort(context, "Recommend", grpc.StatusCode.INTERNAL, "internal error")
        t = result.timings_ms
        response = pb.RecommendResponse(
            bundle_version=result.bundle_version, known_user=result.known_user, ignored_item_ids=result.ignored,
            timings=pb.StageTimings(recall_ms=t["recall"], rank_ms=t["rank"], blend_ms=t["blend"],
                                    total_ms=t["total"], precomputed=result.precomputed))
        add = response.items.add
        for k, (item_id, title, score, slot) in enumerate(zip(result.items.tolist(), result.titles,
                                                               result.scores.tolist(), result.slots)):
            item = add(item_id=item_id, title=title, score=score, slot=SLOT_ENUM[slot])
            if request.explain:
                item.channels.extend(result.channels[k])
                item.reason = result.reasons[k]
                if result.rank_scores[k] == result.rank_scores[k]:  # not NaN
                    item.rank_score = float(result.rank_scores[k])
        if key is not None:
            self._keep(key, response)
        for stage in ("recall", "rank", "blend"):
            self.stage_latency[stage].observe(t[stage] / 1000)
        self.stage_latency["total"].observe(time.perf_counter() - started)
        self.ok_requests.inc()
        return response

    def _keep(self, key: tuple, response) -> None:
        """Keep an answer, serialised, to give again: with no stage run the next time, its stage
        times are zero and it says it was cached."""
        kept = pb.RecommendResponse()
        kept.CopyFrom(response)
        kept.timings.CopyFrom(pb.StageTimings(precomputed=response.timings.precomputed, cached=True))
        answer = kept.SerializeToString()
        cost = len(answer) + KEPT_ANSWER_OVERHEAD
        if cost > self.answer_budget:
            return
        while self.kept_bytes + cost > self.answer_budget:
            self.kept_bytes -= len(self.answers.pop(next(iter(self.answers)))) + KEPT_ANSWER_OVERHEAD
        self.answers[key] = answer
        self.kept_bytes += cost

    async def GetBundleInfo(self, request, context):
        served = self.holder.served
        if served is None:
            await self.abort(context, "GetBundleInfo", grpc.StatusCode.UNAVAILABLE, "no bundle loaded yet")
        self.metrics.requests.labels("GetBundleInfo", "OK").inc()
        return bundle_info(served)

    async def ReloadBundle(self, request, context):
        try:
            self.admin.check(context)
        except AdminDenied as denied:
            log.warning("admin call ReloadBundle refused for %s: %s", context.peer(), denied)
            await self.abort(context, "ReloadBundle", denied.code, str(denied))
        try:
            served = await self.holder.load(request.version)
        except RequestError as exc:
            await self.abort(context, "ReloadBundle", grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except BundleError:  # the holder has logged why; the client learns only that it was refused
            await self.abort(context, "ReloadBundle", grpc.StatusCode.FAILED_PRECONDITION,
                              f"bundle {request.version or 'current'} refused, old one kept (see the server log)")
        self.metrics.requests.labels("ReloadBundle", "OK").inc()
        return bundle_info(served)


@dataclass
class ServerConfig:
    bundles: Path = option(BUNDLES, "Bundle root; the server loads its `current` bundle.")
    address: str = option("127.0.0.1:50051", "host:port to listen on. Loopback by default; give 0.0.0.0:PORT "
                          "to serve other machines.")
    metrics_port: int = option(9100, "Prometheus metrics on METRICS_ADDRESS:PORT/metrics (0 = off).")
    metrics_address: str = option("127.0.0.1", "Address the metrics listen on. Loopback by default; 0.0.0.0 lets a "
                                  "Prometheus on another machine (or pod) scrape them.")
    watch_interval: float = option(2.0, "Seconds between checks of `current` for a new bundle (0 = off).")
    grace_seconds: float = option(10.0, "Seconds to drain in-flight calls on SIGTERM/SIGINT.", flag="--grace")
    popular: float = option(DEFAULT_SHARES["popular"], "Share of the popular slot.")
    new: float = option(DEFAULT_SHARES["new"], "Share of the new slot.")
    personalized: float = option(DEFAULT_SHARES["personalized"], "Share of the personalized slot.")
    slot_pool: int = option(SLOT_POOL, "The popular and new slots draw from this many of the most popular and the "
                            "newest items.")
    slot_order: str = option("personal", "'personal': the popular and new slots ordered for each user by the "
                             "bundle's ranker (new users: with side features, else by their group's popularity); "
                             "'global': one order for everyone.")
    list_order: str = option("score", "'score': the list by the ranker's score where the ranker ordered every slot "
                             "(the quotas decide which items it holds); 'slots': personalized, then new, then popular.")
    tls_cert: Path | None = option(None, "PEM certificate chain: serve TLS (with --tls-key).")
    tls_key: Path | None = option(None, "PEM private key of --tls-cert.")
    tls_client_ca: Path | None = option(None, "PEM CA: require client certificates it signed (mutual TLS).")
    admin_token_file: Path | None = option(None, "File holding the bearer token that admin calls (ReloadBundle) "
                                           "must send as 'authorization: Bearer <token>'.")
    admin_client_ca: Path | None = option(None, "PEM CA whose client certificates may make admin calls (needs "
                                          "--tls-cert; every client then needs a certificate).")
    allow_insecure: bool = option(False, "Serve a non-loopback address without TLS without the warning.",
                                  flag="--allow-insecure")
    workers: int = option(1, "Server processes sharing the port (SO_REUSEPORT); each follows `current` on its "
                          "own, metrics on consecutive ports.")
    log_format: str = option("text", "'text' or 'json' (one JSON object per line).")
    store: str = option("", "The event store to follow and write feedback to: a SQLite file (created if missing) or "
                        "postgresql://...; default: the one the bundle's dataset was written from, if any; 'none': "
                        "none (the Ingest calls are then refused).")
    feed_interval: float = option(0.1, "Seconds between reads of the event store for what other workers wrote.")
    max_connection_age: float = option(60.0, "Seconds after which a client's connection is closed gracefully: the "
                                       "client reconnects, so clients spread again over replicas added since "
                                       "(0 = never).")
    use_precomputed: bool = option(True, "Answer known users' requests without context from the bundle's offline "
                                   "rankings (--no-precomputed: recall and rank every request).",
                                   flag="--precomputed/--no-precomputed")
    answer_cache_mb: float = option(64.0, "MiB of answers each worker keeps to give again to identical requests "
                                    "without recent or excluded items from users without fresh feedback (known users "
                                    "by id, new users by side features, filters included; 0 = off); they go when the "
                                    "bundle or the catalogue changes, the oldest first when full.")
    reuse_port: bool = option(False, "Share the port with other worker processes (set by --workers).", cli=False)

    def __post_init__(self) -> None:
        self.bundles = Path(self.bundles)
        if self.log_format not in ("text", "json"):
            raise ConfigError("--log-format must be 'text' or 'json'")
        shares = (self.popular, self.new, self.personalized)
        if min(shares) < 0 or sum(shares) <= 0 or not all(math.isfinite(v) for v in shares):
            raise ConfigError("slot shares must be finite, non-negative and not all zero")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if not 0 < self.feed_interval <= 60:
            raise ConfigError("--feed-interval must be between 0 and 60 seconds")
        if self.max_connection_age < 0:
            raise ConfigError("--max-connection-age must be at least 0")
        if not 0 <= self.answer_cache_mb <= 1e6:
            raise ConfigError("--answer-cache-mb must be between 0 and 1,000,000")
        if self.slot_pool < 1 or self.slot_order not in SLOT_ORDERS or self.list_order not in LIST_ORDERS:
            raise ConfigError(f"--slot-pool must be at least 1, --slot-order one of {', '.join(SLOT_ORDERS)} and "
                              f"--list-order one of {', '.join(LIST_ORDERS)}")

    @property
    def shares(self) -> dict:
        return {"popular": self.popular, "new": self.new, "personalized": self.personalized}

    @property
    def pipeline_options(self) -> dict:
        return {"shares": self.shares, "use_precomputed": self.use_precomputed, "slot_pool": self.slot_pool,
                "slot_order": self.slot_order, "list_order": self.list_order}


def server_credentials(config: ServerConfig):
    """TLS credentials, or None for plaintext; half a configuration is an error. Client
    certificates are required when either CA is given, and may come from either."""
    for option_name, path in (("--tls-client-ca", config.tls_client_ca), ("--admin-client-ca", config.admin_client_ca)):
        if path and not config.tls_cert:
            raise ConfigError(f"{option_name} needs --tls-cert and --tls-key")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not config.tls_cert:
        return None
    for path in (config.tls_cert, config.tls_key, config.tls_client_ca, config.admin_client_ca):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file not found: {path}")
    authorities = b"".join(Path(p).read_bytes() for p in (config.tls_client_ca, config.admin_client_ca) if p)
    return grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())],
                                       root_certificates=authorities or None, require_client_auth=bool(authorities))


def insecure_warning(config: ServerConfig) -> str | None:
    """What to tell an operator who serves another interface in plaintext."""
    host = config.address.rsplit(":", 1)[0]
    if config.tls_cert or config.allow_insecure or is_loopback_host(host):
        return None
    admin = ("admin calls need the --admin-token-file token, which travels in plaintext" if config.admin_token_file
             else "admin calls are taken from loopback only")
    return (f"serving {config.address} without TLS: requests and replies travel in plaintext ({admin}); "
            "give --tls-cert/--tls-key, or --allow-insecure to silence this warning")


def store_url(config: ServerConfig) -> str | None:
    """The event store to follow: --store, else the one the current bundle was built from."""
    if config.store == "none":
        return None
    if config.store:
        return config.store
    path = current_version(config.bundles)
    try:
        manifest = json.loads((path / "manifest.json").read_text()) if path is not None else {}
    except (OSError, ValueError):
        return None  # the bundle is refused with its reason when it is loaded
    url = (manifest.get("snapshot") or {}).get("store")
    if url and not url.startswith(("postgresql://", "postgres://")) and not Path(url).is_file():
        log.warning("the event store %s the bundle was built from is not here: serving without one (--store)", url)
        return None
    return url


class RunningServer:
    """A started server; `stop()` drains in-flight calls."""

    def __init__(self, server, holder: BundleHolder, health, port: int, metrics: Metrics, tasks: list,
                 ingest: IngestService, stores: list):
        self.server, self.holder, self.health, self.port, self.metrics = server, holder, health, port, metrics
        self.tasks, self.ingest, self.stores = tasks, ingest, stores

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        for task in self.tasks:
            task.cancel()
        self.ingest.close()
        await self.server.stop(grace)
        for store in self.stores:
            store.close()


async def start(config: ServerConfig) -> RunningServer:
    # One request is a few small products: BLAS and OpenMP thread teams only add start-up and
    # spinning, and with several workers they fight over the cores.
    threadpool_limits(1)
    set_search_threads(1)
    metrics = Metrics()
    # two connections to the event store: one follows it, one writes what the Ingest calls bring
    url = store_url(config)
    stores = [await asyncio.to_thread(EventStore, url) for _ in range(2)] if url else []
    reader, writer = stores or (None, None)
    holder = BundleHolder(config.bundles, metrics, config.pipeline_options, reader)
    follower = Follower(reader, holder, config.feed_interval) if reader is not None else None
    age = [("grpc.max_connection_age_ms", int(config.max_connection_age * 1000)),
           ("grpc.max_connection_age_grace_ms", int(config.grace_seconds * 1000))] if config.max_connection_age else []
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.so_reuseport", int(config.reuse_port)), *age])
    admin = AdminAuth.from_files(config.admin_token_file, config.admin_client_ca)
    service = RecommenderService(holder, metrics, admin, config.answer_cache_mb)
    ingest = IngestService(writer, holder, follower, admin, metrics, service.abort, service.malformed)
    server.add_generic_rpc_handlers([*service.handlers(), ingest.handlers()])
    health = service.health
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    credentials = server_credentials(config)
    warning = insecure_warning(config)
    if warning:
        log.warning(warning)

    async def listen() -> int:
        try:
            port = (server.add_secure_port(config.address, credentials) if credentials
                    else server.add_insecure_port(config.address))
        except RuntimeError:
            port = 0
        if port == 0:
            raise ServerError(f"cannot listen on {config.address}")
        await server.start()
        return port

    # Alone on its port, a server listens while it loads (its health says NOT_SERVING); a worker
    # sharing the port binds it only once loaded, or the kernel would hand it calls it cannot answer.
    if config.reuse_port:
        await holder.load()
    port = await listen()
    try:
        if config.metrics_port:
            try:
                start_http_server(config.metrics_port, addr=config.metrics_address, registry=metrics.registry)
            except OSError as exc:
                raise ServerError(f"cannot serve metrics on {config.metrics_address}:{config.metrics_port} "
                                  f"({exc.strerror})") from None
        if not config.reuse_port:
            await holder.load()
    except BaseException:
        await server.stop(0)  # nothing to serve: release the port before reporting why
        raise
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    tasks = []
    if config.watch_interval > 0:
        tasks.append(asyncio.create_task(holder.watch(config.watch_interval)))
    if follower is not None:
        tasks.append(asyncio.create_task(follower.run()))
    return RunningServer(server, holder, health, port, metrics, tasks, ingest, stores)


async def serve_forever(config: ServerConfig, on_ready=None) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting, drain in-flight calls and return."""
    running = await start(config)
    if on_ready is not None:
        on_ready(running)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight calls (up to %.0fs)", config.grace_seconds)
    await running.stop(config.grace_seconds)



class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage(), "pid": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
    logger = logging.getLogger("movierec")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _worker_main(config: ServerConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    configure_logging(config.log_format)
    asyncio.run(serve_forever(config))


def serve_workers(config: ServerConfig, on_ready=None) -> int:
    """`workers` server processes sharing one port through SO_REUSEPORT, each with its own
    bundle watcher (metrics on consecutive ports). SIGTERM/SIGINT to this process drains them
    all. Returns the exit status: 0 when every worker stopped cleanly."""
    import dataclasses
    import multiprocessing as mp

    if not config.address.rsplit(":", 1)[-1].isdigit() or config.address.endswith(":0"):
        raise ConfigError("--workers needs a fixed port in --address")
    ctx = mp.get_context("spawn")
    processes = []
    for index in range(config.workers):
        worker_config = dataclasses.replace(
            config, reuse_port=True, metrics_port=config.metrics_port + index if config.metrics_port else 0)
        process = ctx.Process(target=_worker_main, args=(worker_config,), name=f"movierec-worker-{index}")
        process.start()
        processes.append(process)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if on_ready is not None:
        on_ready(processes)
    while any(p.is_alive() for p in processes):
        for process in processes:
            process.join(timeout=0.5)
        if not stopping and any(p.exitcode not in (None, 0) for p in processes):
            log.error("a worker died; stopping the others")
            stop(signal.SIGTERM, None)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
