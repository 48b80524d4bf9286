"""The PNG of a run's training curves: loss, validation metrics, learning-rate changes."""

from __future__ import annotations

import os
from pathlib import Path


def plot_curves(history: list[dict], path: Path, monitor: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    evaluated = [h for h in history if "valid" in h]
    for protocol, style in (("sampled", "--"), ("full", "-")):
        for metric, color in (("NDCG@10", "tab:green"), ("HR@10", "tab:orange")):
            points = [(h["epoch"], h["valid"][protocol][metric]) for h in evaluated
                      if metric in h["valid"].get(protocol, {})]
            if points:
                xs, ys = zip(*points)
                ax_metric.plot(xs, ys, style, color=color, label=f"{protocol} {metric}")
    rates = [(h["epoch"], h["lr"]) for h in history if h.get("lr") is not None]
    for (_, before), (epoch, after) in zip(rates, rates[1:]):
        if after != before:
            ax_metric.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1)
            ax_metric.annotate(f"lr {after:.1e}", (epoch - 0.5, 0.02), xycoords=("data", "axes fraction"),
                               rotation=90, fontsize=7, color="grey")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title(f"validation (monitor: {monitor})")
    if evaluated:
        ax_metric.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
