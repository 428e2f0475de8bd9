"""Training on patches: config and result, dataset, epoch loop, torchrun data parallelism, learning curves."""
