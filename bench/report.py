"""Print the metrics.json of training runs as one markdown table (for the README).

    python bench/report.py RUN_DIR [RUN_DIR ...]
"""

import json
import sys
from pathlib import Path


def main(run_dirs: list[str]) -> None:
    print("| run | model | epochs (best) | train time | device | ratings file "
          "| sampled HR@10 | sampled NDCG@10 | full HR@10 | full NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            print(f"| {Path(run_dir).name} | (no metrics.json yet) |||||||||")
            continue
        metrics = json.loads(path.read_text())
        ratings = Path(metrics["ratings_file"]["path"].split("!")[-1]).name
        for name, values in metrics["test"].items():
            s, f = values["sampled"], values["full"]
            print(f"| {Path(run_dir).name} | {name} | {metrics['epochs_run']} ({metrics['best_epoch']}) "
                  f"| {metrics['train_seconds'] / 60:.1f} min | {metrics['device']} | {ratings} "
                  f"| {s['HR@10']:.4f} | {s['NDCG@10']:.4f} | {f['HR@10']:.4f} | {f['NDCG@10']:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
