"""What a subcommand prints: its outputs as one JSON document on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(result: dict[str, Any]) -> None:
    """Write a subcommand's outputs to stdout as one JSON document."""
    sys.stdout.write(json.dumps(result, indent=1, default=str) + "\n")
    sys.stdout.flush()
