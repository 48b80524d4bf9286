"""The shared training loop and training runs on disk."""
