"""Predict one scene in a fresh process and print its peak resident memory (run by bench/run.py)."""

import json
import resource
import sys

from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig

image, model, out, tile, overlap = sys.argv[1:6]
config = PredictConfig(tiling=TilingConfig(int(tile), int(overlap)))
result = predict_scene_from_checkpoint(image, model, out, config)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tiles": result.tiles,
                  "seconds": result.seconds}))
