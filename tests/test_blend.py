import numpy as np
import pytest

from movierec.blend.quotas import DEFAULT_SHARES, SlotList, blend, slot_sizes


@pytest.mark.parametrize("n,expected", [(1, (0, 0, 1)), (2, (0, 1, 1)), (3, (1, 1, 1)), (10, (2, 3, 5)),
                                        (37, (7, 11, 19)), (200, (40, 60, 100))])
def test_slot_sizes_follow_the_largest_remainder_rule(n, expected):
    sizes = slot_sizes(n, DEFAULT_SHARES)
    assert (sizes["popular"], sizes["new"], sizes["personalized"]) == expected
    assert sum(sizes.values()) == n


def test_slot_sizes_normalise_shares_and_reject_nonsense():
    assert slot_sizes(4, {"popular": 1, "new": 1, "personalized": 2}) == {"personalized": 2, "new": 1, "popular": 1}
    assert slot_sizes(5, {"popular": 0, "new": 0, "personalized": 3})["personalized"] == 5
    with pytest.raises(ValueError):
        slot_sizes(3, {"popular": 0, "new": 0, "personalized": 0})


def lists(personalized, new, popular):
    def make(items):
        items = np.array(items, dtype=np.int64)
        return SlotList(items, np.linspace(1, 0.5, len(items)).astype(np.float32) if len(items) else np.zeros(0, np.float32))
    return {"personalized": make(personalized), "new": make(new), "popular": make(popular)}


def test_blend_dedups_across_slots_and_respects_blocked_items():
    allowed = np.ones(21, dtype=bool)
    allowed[[3, 4]] = False  # seen
    out = blend(10, DEFAULT_SHARES, lists([1, 2, 3, 4, 5, 6, 7, 8], [5, 6, 9, 10, 11, 12], [1, 9, 13, 14, 15]), allowed)
    assert len(out.items) == 10 and len(set(out.items)) == 10
    assert not set(out.items) & {3, 4}
    slots = dict(zip(out.items.tolist(), out.slots.tolist()))
    assert [i for i, s in slots.items() if s == 0] == [1, 2, 5, 6, 7]
    assert [i for i, s in slots.items() if s == 1] == [9, 10, 11]
    assert [i for i, s in slots.items() if s == 2] == [13, 14]


def test_a_dry_slot_is_filled_by_the_others():
    allowed = np.ones(30, dtype=bool)
    out = blend(10, DEFAULT_SHARES, lists([1, 2], [3, 4, 5, 6, 7, 8, 9, 10], list(range(11, 30))), allowed)
    assert len(out.items) == 10 and len(set(out.items)) == 10
    assert (out.slots == 0).sum() == 2


def test_fewer_items_only_when_the_catalogue_runs_out():
    allowed = np.zeros(10, dtype=bool)
    allowed[[2, 5, 7]] = True
    out = blend(10, DEFAULT_SHARES, lists(list(range(1, 10)), list(range(1, 10)), list(range(1, 10))), allowed)
    assert sorted(out.items.tolist()) == [2, 5, 7]
