"""The SCL DeepLab Processing provider."""
