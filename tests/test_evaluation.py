import math

import numpy as np
import pytest

from movierec.dataset.readers import DataError
from movierec.dataset.evaluation import (build_task, evaluate, full_ranks, popularity_scorer,
                                         rank_metrics, sample_negatives, sampled_ranks)
from movierec.dataset.sequences import Sequences, leave_last_out


def test_rank_metrics_hand_computed():
    metrics = rank_metrics(np.array([0, 1, 9, 10, 50]), ks=(1, 10))
    assert metrics["HR@1"] == pytest.approx(1 / 5)
    assert metrics["NDCG@1"] == pytest.approx(1 / 5)
    assert metrics["HR@10"] == pytest.approx(3 / 5)
    assert metrics["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)


def test_sampled_ranks_count_ties_against_the_target():
    scores = np.array([[0.0, 0.9, 0.5, 0.5, 0.1]])
    assert sampled_ranks(scores, np.array([2]), np.array([[1, 3, 4]]))[0] == 2
    assert sampled_ranks(scores, np.array([1]), np.array([[2, 3, 4]]))[0] == 0


def test_full_ranks_exclude_history_and_padding_but_never_the_target():
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0]])
    # items 1 and 2 are history, so target 3 is first among items {3, 4}
    assert full_ranks(scores, np.array([3]), [np.array([1, 2])])[0] == 0
    assert full_ranks(scores, np.array([4]), [np.array([1])])[0] == 2
    # a target that is also in the history is still ranked
    assert full_ranks(scores, np.array([1]), [np.array([1, 2])])[0] == 0


def test_negatives_are_distinct_unseen_and_reproducible():
    interacted = Sequences.from_lists([[], list(range(1, 40)), [5]])
    users = np.array([1, 2])
    a = sample_negatives(interacted, users, num_items=150, count=100, seed=3)
    b = sample_negatives(interacted, users, num_items=150, count=100, seed=3)
    assert np.array_equal(a, b)
    for row, user in enumerate(users):
        assert len(set(a[row])) == 100
        assert not set(a[row]) & set(interacted.of(user))
        assert a[row].min() >= 1 and a[row].max() <= 150
    with pytest.raises(DataError, match="fewer than 100 unseen"):
        sample_negatives(interacted, users, num_items=120, count=100, seed=3)


def test_oracle_scorer_is_perfect_and_popularity_matches_hand_count():
    rng = np.random.default_rng(0)
    lists = [[]] + [list(rng.choice(np.arange(1, 201), size=12, replace=False)) for _ in range(30)]
    sequences = Sequences.from_lists(lists)
    split = leave_last_out(sequences)
    task = build_task(split, "test", sequences, num_items=200)

    def oracle(users, histories):
        scores = np.zeros((len(users), 201))
        scores[np.arange(len(users)), split.test[users]] = 1.0
        return scores

    result = evaluate(oracle, task, ks=(1, 10))
    assert result["sampled"]["HR@1"] == 1.0 and result["full"]["NDCG@10"] == 1.0

    popularity = popularity_scorer(task.history, 200)(np.array([1]), [])
    assert popularity[0, lists[1][0]] == sum(lists[1][0] in seq[:-1] for seq in lists[1:])
