"""Training of the models the functions serve (ranker, session intent, lifetime value), one module per model."""
