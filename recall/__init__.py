"""Recall stage: the request context, the channel and vector-index protocols, the channels, the merger."""
