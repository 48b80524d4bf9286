"""The rankers, by name. A new ranker is one module here and one line below."""

from movierec.registry import Registry

RANKERS = Registry("ranker", {
    "ncf": "movierec.rank.rankers.ncf:NCFRanker",
    "recall": "movierec.rank.rankers.recall:RecallRanker",
    "lgbm": "movierec.rank.rankers.lgbm:LightGBMRanker",
    "ncf-list": "movierec.rank.rankers.ncf_list:CandidateNCFRanker",
    "din": "movierec.rank.rankers.din:DINRanker",
})
