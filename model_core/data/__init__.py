"""Scenes in and training data out: L2A products (SAFE, STAC), sample scenes, rasters, patches and their windows."""
