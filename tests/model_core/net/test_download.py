"""Downloading weight sets from a server on 127.0.0.1: pieces, progress, cancel, resume, hashes, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from pathlib import Path

import pytest
from scl_deeplab.model_core.errors import Canceled, DownloadError, WeightsHashError
from scl_deeplab.model_core.net import download as dl
from scl_deeplab.model_core.net import transport, weight_sets
from scl_deeplab.tests.network import only_loopback, proxy_asking_for_login
from scl_deeplab.tests.weight_server import hub_name, serve_weights

PIECE = 64 * 1024
DATA = os.urandom(5 * PIECE + 1234)  # six pieces, the last one short
NAME = hub_name("fake_resnet50", DATA)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch, tmp_path):
    """Any connection outside 127.0.0.1 fails the test; no proxy or mirror from the environment; fresh folders."""
    only_loopback(monkeypatch)
    for name in ("NO_PROXY", "no_proxy", weight_sets.BASE_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weight_sets.WEIGHTS_DIR_ENV, str(tmp_path / "plugin-weights"))


class Recorder:
    """A Progress that keeps percents and messages, and cancels after ``cancel_after`` percents."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.percents: list[float] = []
        self.messages: list[str] = []
        self.cancel_after = cancel_after

    def set_progress(self, percent: float) -> None:
        self.percents.append(percent)

    def is_canceled(self) -> bool:
        return self.cancel_after is not None and len(self.percents) >= self.cancel_after

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.messages.append(message)


def as_set(url: str, **changes) -> weight_sets.WeightSet:
    """The SSL4EO-S12 RGB entry, pointing at a test file."""
    return dataclasses.replace(weight_sets.weight_set("ssl4eo-rgb"), url=url, **changes)


def hub() -> Path:
    return weight_sets.hub_checkpoints()


def test_downloads_in_pieces_verifies_and_renames(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    progress = Recorder()

    path = dl.download(as_set(server.url(NAME)), progress=progress, chunk_bytes=PIECE)

    assert path == hub() / NAME and path.read_bytes() == DATA
    assert not (hub() / f"{NAME}.part").exists()
    assert server.ranges == [f"bytes={i * PIECE}-{(i + 1) * PIECE - 1}" for i in range(6)]
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    assert len(progress.percents) == 7 and progress.percents[0] == pytest.approx(99 * PIECE / len(DATA))
    assert any("Downloaded and verified" in m for m in progress.messages)


def test_a_verified_copy_on_disk_is_not_fetched_again(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    weights = as_set(server.url(NAME))
    dl.download(weights, chunk_bytes=PIECE)
    asked = len(server.ranges)
    progress = Recorder()
    assert dl.download(weights, progress=progress, chunk_bytes=PIECE) == hub() / NAME
    assert len(server.ranges) == asked
    assert "on disk already" in progress.messages[0]


def test_cancel_keeps_the_part_and_the_next_run_resumes_it(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    weights = as_set(server.url(NAME))
    with pytest.raises(Canceled, match=r"first 0\.1 MB .* are kept in .*\.part; downloading ssl4eo-rgb again resumes"):
        dl.download(weights, progress=Recorder(cancel_after=2), chunk_bytes=PIECE)
    part = hub() / f"{NAME}.part"
    assert part.read_bytes() == DATA[: 2 * PIECE]
    assert not (hub() / NAME).exists()

    progress = Recorder()
    dl.download(weights, progress=progress, chunk_bytes=PIECE)
    assert server.ranges[2] == f"bytes={2 * PIECE}-{3 * PIECE - 1}"  # no byte asked for twice
    assert len(server.ranges) == 6
    assert (hub() / NAME).read_bytes() == DATA and not part.exists()
    assert progress.messages[0].startswith(f"Resuming {NAME} from 0.1 MB")


def test_a_cut_connection_is_resumed_where_the_file_ends(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    server.cuts = [PIECE, PIECE, 1000]  # the third answer is cut after 1000 bytes
    progress = Recorder()
    dl.download(as_set(server.url(NAME)), progress=progress, chunk_bytes=PIECE, retry_pause_s=0)
    assert (hub() / NAME).read_bytes() == DATA
    assert server.ranges[2] == server.ranges[3] == f"bytes={2 * PIECE}-{3 * PIECE - 1}"
    assert len(server.ranges) == 7
    assert any("connection was cut" in m and "trying again from 0.1 MB (1 of 3)" in m for m in progress.messages)


def test_a_connection_cut_every_time_keeps_the_part_for_a_later_run(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    server.cuts = [PIECE] + [10] * (dl.RETRIES + 1)
    weights = as_set(server.url(NAME))
    with pytest.raises(DownloadError, match="connection was cut.* first 0.1 MB .* kept in .*resumes from there"):
        dl.download(weights, chunk_bytes=PIECE, retry_pause_s=0)
    assert (hub() / f"{NAME}.part").stat().st_size == PIECE
    assert len(server.ranges) == 1 + dl.RETRIES + 1

    dl.download(weights, chunk_bytes=PIECE)  # the line is back
    assert server.ranges[dl.RETRIES + 2] == f"bytes={PIECE}-{2 * PIECE - 1}"
    assert (hub() / NAME).read_bytes() == DATA


def test_a_file_with_another_hash_is_refused_and_deleted(httpserver):
    tampered = DATA[:-1] + bytes([DATA[-1] ^ 1])
    server = serve_weights(httpserver, {NAME: tampered})
    with pytest.raises(WeightsHashError, match=f"not the published {NAME}.*expected {NAME[-12:-4]}.*It was deleted"):
        dl.download(as_set(server.url(NAME)), chunk_bytes=PIECE)
    assert list(hub().iterdir()) == []


def test_a_server_error_is_retried_then_reported(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    server.status = 503
    with pytest.raises(DownloadError, match="answered HTTP 503 .*try again later") as caught:
        dl.download(as_set(server.url(NAME)), chunk_bytes=PIECE, retry_pause_s=0)
    assert len(server.ranges) == dl.RETRIES + 1
    assert "copy it into" in str(caught.value) and str(hub()) in str(caught.value)
    assert not (hub() / NAME).exists()


def test_a_missing_file_is_reported_at_once(httpserver):
    server = serve_weights(httpserver, {})
    with pytest.raises(DownloadError, match="answered HTTP 404 .*not at that address .*check BASE_URL"):
        dl.download(as_set(server.url(NAME)), chunk_bytes=PIECE, retry_pause_s=0)
    assert len(server.ranges) == 1


def test_no_server_at_all_says_offline_and_how_to_get_the_file_elsewhere():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    weights = as_set(f"http://127.0.0.1:{port}/models/{NAME}")
    with pytest.raises(DownloadError) as caught:
        dl.download(weights, chunk_bytes=PIECE, retry_pause_s=0)
    message = str(caught.value)
    assert "cannot reach 127.0.0.1" in message and "offline" in message
    assert f"copy it into {hub()} under the name {NAME}" in message and "BASE_URL" in message
    assert not hub().exists() or list(hub().iterdir()) == []


def test_a_proxy_refusal_names_the_proxy_and_the_way_out(monkeypatch):
    with proxy_asking_for_login() as port:
        address = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("http_proxy", address)
        with pytest.raises(DownloadError, match=f"proxy {address} refused the request \\(HTTP 407.*HTTPS_PROXY="):
            dl.download(as_set(f"http://weights.example/models/{NAME}"), chunk_bytes=PIECE)


def test_base_url_replaces_scheme_host_and_folder(httpserver, monkeypatch):
    server = serve_weights(httpserver, {NAME: DATA})
    weights = as_set(f"https://weights.example/some/folder/{NAME}")
    assert weights.source_url(server.base + "/") == server.url(NAME)
    path = dl.download(weights, base_url=server.base, chunk_bytes=PIECE)
    assert path.read_bytes() == DATA

    path.unlink()
    monkeypatch.setenv(weight_sets.BASE_URL_ENV, server.base)
    assert dl.download(weights, chunk_bytes=PIECE).read_bytes() == DATA


def test_a_server_without_ranges_still_works(httpserver):
    server = serve_weights(httpserver, {NAME: DATA})
    server.ignore_ranges = True
    assert dl.download(as_set(server.url(NAME)), chunk_bytes=PIECE).read_bytes() == DATA
    assert len(server.ranges) == 1


def test_files_without_a_hash_in_their_name_go_to_the_plugin_folder_with_a_pinned_hash(httpserver, tmp_path):
    server = serve_weights(httpserver, {"plain.pth": DATA})
    pinned = as_set(server.url("plain.pth"), sha256=hashlib.sha256(DATA).hexdigest())
    path = dl.download(pinned, chunk_bytes=PIECE)
    assert path == tmp_path / "plugin-weights" / "plain.pth" and path.read_bytes() == DATA
    assert pinned.find() == path

    path.unlink()
    wrong = as_set(server.url("plain.pth"), sha256="0" * 64)
    with pytest.raises(WeightsHashError, match="expected 0000000000000000"):
        dl.download(wrong, chunk_bytes=PIECE)
    assert list((tmp_path / "plugin-weights").iterdir()) == []


def test_content_range_parsing():
    assert transport.parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert transport.parse_content_range("bytes */1000") == (None, None, 1000)
    assert transport.parse_content_range("bytes 5-9/*") == (5, 9, None)
    assert transport.parse_content_range(None) == (None, None, None)
