"""Rank stage: the ranker protocol, the rankers, and the per-user rankings built offline."""
