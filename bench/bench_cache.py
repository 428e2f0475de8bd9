"""The bench's cache (``bench/.cache/``): results that depend only on their inputs, keyed by those inputs' content.

An entry's name is a hash of everything it was computed from (file contents,
settings, library versions, model_core's code), so a changed input makes a new
entry instead of reusing a stale one. Entries are written whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from scl_deeplab.model_core.net.download import sha256_of

CACHE = Path(__file__).resolve().parent / ".cache"
ROOT = Path(__file__).resolve().parent.parent


@cache
def code_digest() -> str:
    """One hash of all of model_core's Python files: any change to the plugin's code changes it."""
    files = sorted((ROOT / "model_core").rglob("*.py"))
    return key({str(p.relative_to(ROOT)): sha256_of(p) for p in files})


def key(inputs: dict[str, Any]) -> str:
    """A short hash of ``inputs`` (JSON-serialisable)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON at ``path`` in one step (a partial file never has the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def cached_json(prefix: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``compute()``'s value, stored under ``prefix`` and the hash of ``inputs``; and whether it came from the cache."""
    path = CACHE / f"{prefix}_{key(inputs)}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8")), True
    value = compute()
    write_json(path, value)
    return value, False
