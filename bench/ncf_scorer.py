"""NCF scorer throughput: microseconds to score 500 candidates for one user, three ways.

    python bench/ncf_scorer.py --data DATA_DIR --run-dir NCF_RUN [--candidates 500] [--calls 300]

- dygraph: the Paddle model called eagerly;
- inference: `paddle.jit.save` + a `paddle.inference` predictor (1 CPU thread);
- numpy: `NCFScorer`, item-only work precomputed at export.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np
import paddle

from movierec.dataset.store import load_dataset
from movierec.models.ncf.training import load_ncf, read_ncf_config, run_features


def per_call_us(fn, calls: int) -> float:
    for _ in range(10):
        fn(0)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    config = read_ncf_config(args.run_dir)
    features = run_features(dataset, args.run_dir, config)
    model = load_ncf(args.run_dir, features)
    rng = np.random.default_rng(0)
    users = rng.integers(1, dataset.num_users + 1, size=args.calls)
    candidates = np.stack([rng.choice(np.arange(1, dataset.num_items + 1), args.candidates, replace=False)
                           for _ in range(args.calls)])
    n = args.candidates
    results = {"candidates": n, "calls": args.calls, "run": str(args.run_dir), "config": {
        "side_features": config.side_features, "posters": config.posters, "mlp": config.mlp}}

    def dygraph(i):
        with paddle.no_grad():
            model(paddle.to_tensor(np.full(n, users[i])),
                  paddle.to_tensor(np.repeat(features.user_features[users[i]][None], n, 0)),
                  paddle.to_tensor(candidates[i])).numpy()

    results["dygraph_us"] = per_call_us(dygraph, args.calls)

    from paddle.static import InputSpec

    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "ncf")
        paddle.jit.save(model, prefix, input_spec=[InputSpec([None], "int64"), InputSpec([None, 4], "int64"),
                                                   InputSpec([None], "int64")])
        model_file = next(p for p in Path(tmp).iterdir() if p.suffix in (".json", ".pdmodel"))
        inference_config = paddle.inference.Config(str(model_file), prefix + ".pdiparams")
        inference_config.disable_gpu()
        inference_config.disable_glog_info()
        inference_config.set_cpu_math_library_num_threads(1)
        predictor = paddle.inference.create_predictor(inference_config)
        handles = [predictor.get_input_handle(name) for name in predictor.get_input_names()]
        output = predictor.get_output_handle(predictor.get_output_names()[0])

        def inference(i):
            for handle, array in zip(handles, (np.full(n, users[i]),
                                               np.repeat(features.user_features[users[i]][None], n, 0),
                                               candidates[i])):
                handle.copy_from_cpu(np.ascontiguousarray(array, dtype=np.int64))
            predictor.run()
            output.copy_to_cpu()

        results["inference_us"] = per_call_us(inference, args.calls)

    scorer = model.export_scorer()
    results["numpy_us"] = per_call_us(lambda i: scorer.score(users[i], features.user_features[users[i]],
                                                             candidates[i]), args.calls)
    check = scorer.score(users[0], features.user_features[users[0]], candidates[0])
    with paddle.no_grad():
        reference = model(paddle.to_tensor(np.full(n, users[0])),
                          paddle.to_tensor(np.repeat(features.user_features[users[0]][None], n, 0)),
                          paddle.to_tensor(candidates[0])).numpy()
    results["max_abs_diff_numpy_vs_paddle"] = float(np.abs(check - reference).max())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
