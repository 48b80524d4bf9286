"""NCF: NeuMF with side features and posters, the ranking model."""
