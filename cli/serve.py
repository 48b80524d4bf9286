"""`movierec serve` and `movierec recommend`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from movierec.client.connect import TARGET_HELP
from movierec.server.app import ServerConfig

from .common import CLIError, console, err_console, parse_ids


def serve_with(config: ServerConfig) -> None:
    """Run the server (or its worker processes) until SIGTERM/SIGINT."""
    import asyncio

    from movierec.server.app import configure_logging, serve_forever, serve_workers

    configure_logging(config.log_format)

    def ready(running):
        info = running.holder.served.pipeline.bundle
        host = config.address.rsplit(":", 1)[0]
        target = f"{host}:{running.port}"
        console.print(f"serving bundle [green]{info.version}[/] on [bold]{escape(target)}[/]"
                      + (f", metrics on http://{config.metrics_address}:{config.metrics_port}/metrics" if config.metrics_port else ""))
        console.print(f"call it:  movierec recommend --user 1 --target {escape(target)}")
        console.print(f"   or:    grpcurl -plaintext -d '{{\"user_id\": 1, \"n\": 10}}' {escape(target)} "
                      "movierec.v1.Recommender/Recommend")
        console.print("stop with Ctrl-C (in-flight calls are drained)")

    if config.workers == 1:
        asyncio.run(serve_forever(config, ready))
        return
    console.print(f"starting {config.workers} workers on {escape(config.address)} (bundles {config.bundles}); "
                  "stop with Ctrl-C")
    if serve_workers(config):
        raise CLIError("a worker exited with an error; see the log above")


def serve(config: ServerConfig):
    """Serve Recommend over gRPC (health checking, reflection, metrics, hot reload)."""
    serve_with(config)


def recommend(
    user: int = typer.Option(0, help="Raw MovieLens user id (0 = a new user)."),
    n: int = typer.Option(10, help="How many movies."),
    recent: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids watched since the bundle was built."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids never to return."),
    gender: str = typer.Option("", help="New user: M or F."),
    age: int = typer.Option(0, help="New user: age in years."),
    occupation: str = typer.Option("", help="New user: occupation as in the dataset."),
    genres: Optional[str] = typer.Option(None, help="Only these genres (comma-separated)."),
    not_genres: Optional[str] = typer.Option(None, help="None of these genres (comma-separated)."),
    min_year: int = typer.Option(0, help="Earliest release year."),
    max_year: int = typer.Option(0, help="Latest release year."),
    explain: bool = typer.Option(False, help="Show recall channels and rank scores."),
    target: str = typer.Option(ServerConfig.address, help=TARGET_HELP),
    timeout: float = typer.Option(10.0, help="Deadline in seconds."),
    tls_ca: Optional[Path] = typer.Option(None, help="PEM CA that signed the server's certificate: connect with TLS."),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM client certificate, for a server that requires mutual TLS."),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert."),
):
    """Ask a running server for recommendations and print them as a table."""
    import grpc

    from movierec.client.connect import channel
    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    gender_value = {"": pb.GENDER_UNSPECIFIED, "M": pb.GENDER_MALE, "F": pb.GENDER_FEMALE}.get(gender.upper())
    if gender_value is None:
        raise CLIError("--gender must be M or F")
    if not 0 <= user < 2**64:
        raise CLIError("--user must be a raw MovieLens user id (>= 0)")
    if not 0 < n < 2**32 or not 0 <= age < 2**32 or not 0 <= min_year < 2**32 or not 0 <= max_year < 2**32:
        raise CLIError("--n must be positive, and --age, --min-year and --max-year not negative")
    recent_ids, exclude_ids = parse_ids(recent, "--recent"), parse_ids(exclude, "--exclude")
    if not all(0 <= i < 2**64 for i in recent_ids + exclude_ids):
        raise CLIError("movie ids must be positive")
    request = pb.RecommendRequest(
        user_id=user, n=n, recent_item_ids=recent_ids, exclude_item_ids=exclude_ids, explain=explain,
        side_features=pb.SideFeatures(gender=gender_value, age=age, occupation=occupation),
        filters=pb.Filters(include_genres=[g for g in (genres or "").split(",") if g],
                           exclude_genres=[g for g in (not_genres or "").split(",") if g],
                           min_year=min_year, max_year=max_year))
    with channel(target, tls_ca, tls_cert, tls_key) as connection:
        try:
            response = pb_grpc.RecommenderStub(connection).Recommend(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise CLIError(f"{target}: {exc.code().name}: {exc.details()}") from None
    who = f"user {user}" if response.known_user else "a new user"
    table = Table(title=f"{len(response.items)} movies for {who} (bundle {response.bundle_version})")
    for column, justify in (("#", "right"), ("movie id", "right"), ("title", "left"), ("slot", "left"),
                            ("score", "right")):
        table.add_column(column, justify=justify)
    if explain:
        table.add_column("channels")
        table.add_column("rank score", justify="right")
        table.add_column("why")
    for rank, item in enumerate(response.items, start=1):
        row = [str(rank), str(item.item_id), item.title, pb.Slot.Name(item.slot).removeprefix("SLOT_").lower(),
               f"{item.score:.4f}"]
        if explain:
            row += [",".join(item.channels), f"{item.rank_score:.4f}" if item.rank_score else "",
                    item.reason]
        table.add_row(*row)
    console.print(table)
    t = response.timings
    precomputed = "personalized list precomputed at build time" if t.precomputed else ""
    if t.cached:
        console.print("server time: none (the server's answer to the same request earlier, kept"
                      + (f"; {precomputed})" if precomputed else ")"))
    else:
        console.print(f"server time: recall {t.recall_ms:.2f} ms, rank {t.rank_ms:.2f} ms, blend {t.blend_ms:.2f} ms, "
                      f"total {t.total_ms:.2f} ms" + (f" ({precomputed})" if precomputed else ""))
    if response.ignored_item_ids:
        err_console.print(f"[yellow]unknown movie ids ignored: {list(response.ignored_item_ids)}[/]")


def reload(
    version: str = typer.Option("", help="A version directory under the server's bundle root (empty: re-read "
                                "`current`)."),
    target: str = typer.Option(ServerConfig.address, help=TARGET_HELP),
    admin_token_file: Optional[Path] = typer.Option(None, help="File with the server's admin bearer token."),
    timeout: float = typer.Option(60.0, help="Deadline in seconds (loading a large bundle takes a while)."),
    tls_ca: Optional[Path] = typer.Option(None, help="PEM CA that signed the server's certificate: connect with TLS."),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM client certificate (of the admin CA, or for mutual TLS)."),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert."),
):
    """Ask a running server to switch bundles (an admin call): it loads and verifies the new one
    beside the old, and keeps the old one if the new one is refused."""
    import grpc

    from movierec.client.connect import admin_metadata, channel
    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    with channel(target, tls_ca, tls_cert, tls_key) as connection:
        try:
            info = pb_grpc.RecommenderStub(connection).ReloadBundle(
                pb.ReloadBundleRequest(version=version), timeout=timeout, metadata=admin_metadata(admin_token_file))
        except grpc.RpcError as exc:
            raise CLIError(f"{target}: {exc.code().name}: {exc.details()}") from None
    console.print(f"{escape(target)} now serves bundle [green]{info.version}[/] ({info.items:,} items, "
                  f"{info.users:,} users, index {info.index} on {info.device})")
