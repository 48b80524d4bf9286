"""Peers: what a user would get from the library they would otherwise pick, trained on the
same histories a bundle holds, for the served-quality report. `implicit`'s ALS comes with the
`peers` extra (`pip install 'movierec[peers]'`)."""

from __future__ import annotations

import numpy as np

from movierec.dataset.sequences import Sequences
from movierec.errors import ConfigError

PEERS = ("als",)


class ALSPeer:
    """implicit's AlternatingLeastSquares on the binary user x item matrix of the histories;
    users without history get the most popular items, as a user of the library would do."""

    def __init__(self, sequences: Sequences, num_items: int, popular: np.ndarray, factors: int = 64,
                 regularization: float = 0.05, iterations: int = 15, seed: int = 0):
        try:
            import implicit
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError:
            raise ConfigError("the ALS peer needs the `implicit` package: pip install 'movierec[peers]'") from None
        import scipy.sparse as sp

        users = np.repeat(np.arange(sequences.num_users), sequences.lengths())
        matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, sequences.items)),
                               shape=(sequences.num_users, num_items + 1))
        matrix.data[:] = 1.0
        self.matrix = matrix
        self.popular = popular
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit asks for it: its own loop does the work
            self.model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                                 iterations=iterations, random_state=seed, num_threads=1)
            self.model.fit(matrix, show_progress=False)
        self.version = implicit.__version__

    def recommend(self, user: int, k: int, allowed: np.ndarray) -> np.ndarray:
        """Top-k item ids for contiguous user `user` among the `allowed` mask."""
        if user <= 0 or self.matrix.indptr[user + 1] == self.matrix.indptr[user]:
            return self.popular[allowed[self.popular]][:k]
        blocked = np.flatnonzero(~allowed)
        ids, _ = self.model.recommend(user, self.matrix[user], N=k, filter_already_liked_items=True,
                                      filter_items=blocked)
        return np.asarray(ids, dtype=np.int64)
