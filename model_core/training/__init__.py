"""Training on patches: the dataset, the epoch loop, torchrun data parallelism and learning curves."""
