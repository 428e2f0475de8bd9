"""The network: DeepLabv3-ResNet50, its starting weights, checkpoints, devices and the fast CPU inference copy."""
