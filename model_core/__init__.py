"""SCL DeepLab's model core: data, DeepLabv3 training, tiled prediction and metrics.

Imports neither qgis nor PyQt, so it runs and is tested on its own, and from the
command line: ``python -m scl_deeplab.model_core --help``.
"""
