"""Tailor's lab: the shopper simulator, data-set loaders, model training, evaluations and benchmarks, all run on the product's own code."""
