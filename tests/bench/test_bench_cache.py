"""The bench's cache (bench/bench_cache.py): an entry is reused for the same inputs only, and written whole."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("bench_cache_under_test", BENCH / "bench_cache.py")
bench_cache = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_cache)


def test_same_inputs_reuse_the_entry_and_changed_inputs_make_a_new_one(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_cache, "CACHE", tmp_path / "cache")
    calls = []

    def compute(value: int):
        def run():
            calls.append(value)
            return {"value": value}
        return run

    first = bench_cache.cached_json("flops", {"checkpoint": "a", "torch": "2"}, compute(1))
    again = bench_cache.cached_json("flops", {"torch": "2", "checkpoint": "a"}, compute(2))  # key order is irrelevant
    other = bench_cache.cached_json("flops", {"checkpoint": "b", "torch": "2"}, compute(3))
    assert first == ({"value": 1}, False)
    assert again == ({"value": 1}, True)
    assert other == ({"value": 3}, False)
    assert calls == [1, 3]
    assert sorted(p.name.split("_")[0] for p in (tmp_path / "cache").iterdir()) == ["flops", "flops"]
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_a_file_change_changes_its_hash_and_the_code_digest_covers_model_core(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"one")
    before = bench_cache.sha256_of(path)
    path.write_bytes(b"two")
    assert bench_cache.sha256_of(path) != before
    assert len(bench_cache.code_digest()) == 12
    assert bench_cache.key({"a": 1}) != bench_cache.key({"a": 2})
