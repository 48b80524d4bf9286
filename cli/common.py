"""What every command shares: the consoles, the error handling, progress bars, id lists."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Optional

# Paddle warns about a missing compiler cache at import; it means nothing for users.
warnings.filterwarnings("ignore", message=".*ccache.*")
os.environ.setdefault("GLOG_minloglevel", "2")
logging.getLogger("faiss").setLevel(logging.WARNING)
# A build on a cluster: the engines' start-and-stop chatter, not what a user asked for; warnings stay.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from movierec.errors import MovieRecError

# No emoji codes: an address such as "[::1]:50051" or a message with ":x:" prints as written.
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


class CLIError(MovieRecError):
    """An error the user can act on: printed as one line, exit status 2."""


def handles_errors(command):
    """movierec's own errors (bad input the user can fix) become one line and exit 2; anything
    else is a bug and keeps its traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MovieRecError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; a resumable run continues from its last checkpoint")
            raise typer.Exit(130) from None
    return wrapper


def progress(total: int, description: str):
    """A tqdm bar as a callable `advance(n=1)`; closes itself once full."""
    from tqdm import tqdm

    bar = tqdm(total=total or None, desc=description, leave=False, unit_scale=True, dynamic_ncols=True)

    def advance(n: int = 1) -> None:
        bar.update(n)
        if total and bar.n >= total:
            bar.close()
    return advance


def parse_ids(text: Optional[str], option: str, what: str = "movie ids") -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CLIError(f"{option} takes comma-separated {what}, not {text!r}") from None


def metrics_table(title: str, rows: dict[str, dict], ks: list[int]) -> Table:
    table = Table(title=title)
    table.add_column("model")
    for protocol in ("sampled", "full"):
        for k in ks:
            table.add_column(f"{protocol} HR@{k}", justify="right")
            table.add_column(f"{protocol} NDCG@{k}", justify="right")
    for name, metrics in rows.items():
        cells = [f"{metrics[p][f'{m}@{k}']:.4f}" for p in ("sampled", "full") for k in ks for m in ("HR", "NDCG")]
        table.add_row(name, *cells)
    return table
