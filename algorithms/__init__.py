"""One thin Processing algorithm per task; the work happens in model_core."""
