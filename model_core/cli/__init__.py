"""The command line (``python -m scl_deeplab.model_core``), the worker job runner and the environment report."""
