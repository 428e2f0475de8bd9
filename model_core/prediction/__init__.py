"""Whole-scene prediction: tile planning and blending, one scene or many."""
