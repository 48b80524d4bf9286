"""Recall stage: candidate generators (SASRec today; FAISS channels build on it)."""
