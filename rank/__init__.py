"""Rank stage: second-stage rescoring of recalled candidates."""
