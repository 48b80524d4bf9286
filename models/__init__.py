"""The models, trained in Paddle (model.py, training.py) and served in numpy (inference.py, scorer.py)."""
