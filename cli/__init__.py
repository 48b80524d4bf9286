"""The `movierec` command line: one module per command group, each command a thin layer over
the stages, its options made from their config dataclasses (cli/options.py)."""

import typer

from . import bench, bundle, data, posters, quickstart, serve, train
from .common import handles_errors
from .options import with_config

app = typer.Typer(help="movierec: a two-stage movie recommendation engine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model.", no_args_is_help=True)
posters_app = typer.Typer(help="Poster vectors: extract them from images or import them.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(posters_app, name="posters")


def command(group: typer.Typer, function, name: str | None = None) -> None:
    group.command(name)(handles_errors(with_config(function)))


command(app, data.data, "data")
command(train_app, train.train_sasrec, "sasrec")
command(train_app, train.train_ncf, "ncf")
command(train_app, train.train_ranker, "ranker")
command(train_app, train.train_content, "content")
command(train_app, train.train_two_tower, "two-tower")
command(app, train.eval_run, "eval")
command(posters_app, posters.embed, "embed")
command(posters_app, posters.import_vectors, "import")
command(app, bundle.build, "build")
command(app, bundle.recall, "recall")
command(app, serve.serve, "serve")
command(app, serve.recommend, "recommend")
command(app, serve.reload, "reload")
command(app, bench.bench, "bench")
command(app, quickstart.quickstart, "quickstart")
