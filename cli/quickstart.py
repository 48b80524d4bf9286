"""`movierec quickstart`: the main job on the embedded default."""

from __future__ import annotations

import typer

from movierec.bundle.builder import BuildOptions
from movierec.server.app import ServerConfig

from .bundle import build_and_report, train_and_build
from .data import prepare
from .serve import serve_with


def quickstart(
    source: str = typer.Option("ml-100k", help="Release to start from (see `movierec data --source`)."),
    sasrec_epochs: int = typer.Option(30, help="SASRec training epochs."),
    ncf_epochs: int = typer.Option(5, help="NCF training epochs."),
    address: str = typer.Option(ServerConfig.address, help="Where to serve."),
    metrics_port: int = typer.Option(ServerConfig.metrics_port, help="Prometheus metrics port (0 = off)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Stop after building the bundle."),
):
    """The main job on the embedded default: ML-100K -> normalise -> train SASRec and NCF ->
    build a bundle -> serve it over gRPC (Ctrl-C stops)."""
    options = BuildOptions(data_dir=prepare(source, None, strict=False))
    train_and_build(options, sasrec_epochs, ncf_epochs)
    build_and_report(options)
    if not no_serve:
        serve_with(ServerConfig(address=address, metrics_port=metrics_port))
