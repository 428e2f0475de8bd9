"""Whole-scene prediction: its config and result, tile planning and blending, one scene or many."""
