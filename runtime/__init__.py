"""Where the model runs (QGIS's Python or a worker Python): settings, interpreter, child runner, dispatch, set-up."""
