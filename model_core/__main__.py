"""``python -m scl_deeplab.model_core``: the model_core command line (see cli.py)."""

import sys

from .cli.main import main

sys.exit(main())
