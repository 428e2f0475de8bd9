"""scldeeplab:downloadweights through Processing and QGIS's network stack, against 127.0.0.1; PRETRAINED's list."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
from scl_deeplab.model_core.net import weight_sets
from scl_deeplab.tests.network import proxy_asking_for_login
from scl_deeplab.tests.recording import RecordingFeedback
from scl_deeplab.tests.weight_server import hub_name, serve_weights

MB = 1024 * 1024
DATA = os.urandom(9 * MB + 12345)  # three 4 MB pieces
NAME = hub_name("sentinel2_resnet50_si_rgb", DATA)


@pytest.fixture()
def satlas(monkeypatch, tmp_path, httpserver):
    """The satlas-rgb set served from 127.0.0.1 into an empty TORCH_HOME; returns the server."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weight_sets.WEIGHTS_DIR_ENV, str(tmp_path / "plugin-weights"))
    monkeypatch.delenv(weight_sets.BASE_URL_ENV, raising=False)
    server = serve_weights(httpserver, {NAME: DATA})
    served = dataclasses.replace(weight_sets.weight_set("satlas-rgb"), url=server.url(NAME))
    monkeypatch.setattr(weight_sets, "WEIGHT_SETS", tuple(
        served if s.name == "satlas-rgb" else s for s in weight_sets.WEIGHT_SETS))
    return server


class CancelAfterFirstPiece(RecordingFeedback):
    def setProgress(self, progress: float) -> None:  # noqa: N802 - QGIS's name
        super().setProgress(progress)
        if 0 < progress < 100:
            self.cancel()


def hub_file():
    return weight_sets.hub_checkpoints() / NAME


def test_downloads_with_progress_into_torch_hubs_folder(provider, satlas):
    import processing

    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"}, feedback=feedback)
    assert result["OUTPUT"] == str(hub_file()) and hub_file().read_bytes() == DATA
    assert satlas.ranges == [f"bytes={i * 4 * MB}-{(i + 1) * 4 * MB - 1}" for i in range(3)]
    steps = [p for p in feedback.percents if p > 0]
    assert steps == sorted(steps) and len(steps) >= 3 and steps[-1] == 100
    assert any("Downloaded and verified satlas-rgb" in line for line in feedback.infos)


def test_a_cut_connection_is_resumed_and_a_redirect_keeps_the_range(provider, satlas):
    import processing

    satlas.cuts = [4 * MB, 1000]  # the second answer breaks off after 1000 bytes
    base = satlas.base + "/moved"  # a mirror that redirects every file
    processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb", "BASE_URL": base})
    assert hub_file().read_bytes() == DATA
    assert satlas.ranges == satlas.redirected  # the Range header survives the redirect
    assert satlas.ranges[1] == satlas.ranges[2] == f"bytes={4 * MB}-{8 * MB - 1}"  # asked again after the cut
    assert len(satlas.ranges) == 4


def test_cancel_keeps_the_part_and_the_next_run_resumes(provider, satlas):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Download canceled.*resumes from there"):
        processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"}, feedback=CancelAfterFirstPiece())
    part = hub_file().with_name(NAME + ".part")
    assert part.stat().st_size == 4 * MB and not hub_file().exists()
    processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"})
    assert satlas.ranges[1] == f"bytes={4 * MB}-{8 * MB - 1}" and hub_file().read_bytes() == DATA


def test_a_file_with_another_hash_is_deleted(provider, satlas):
    import processing
    from qgis.core import QgsProcessingException

    satlas.files[NAME] = DATA[::-1]
    with pytest.raises(QgsProcessingException, match="not the published .*It was deleted"):
        processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"})
    assert list(weight_sets.hub_checkpoints().iterdir()) == []


def test_http_errors_and_no_server_are_clear(provider, satlas):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="answered HTTP 404.*copy it into"):
        processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb", "BASE_URL": satlas.base + "/elsewhere"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(QgsProcessingException, match="cannot reach 127.0.0.1.*offline.*copy it into"):
        processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb", "BASE_URL": f"http://127.0.0.1:{port}"})


def test_pretrained_lists_every_set_and_what_is_on_disk(provider, satlas):
    import processing
    from qgis.core import QgsApplication

    processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"})
    train = QgsApplication.processingRegistry().createAlgorithmById("scldeeplab:trainhead")
    pretrained = train.parameterDefinition("PRETRAINED")
    assert pretrained.options() == list(weight_sets.CHOICES)
    assert pretrained.description().endswith("(on disk: satlas-rgb)")
    for name in weight_sets.NAMES:
        assert f"- {name}: " in pretrained.help() and f"- {name}: " in train.shortHelpString()
    assert "satlas-rgb: SatlasPretrain" in pretrained.help() and f"on disk: {hub_file()}" in pretrained.help()
    assert "ODC-BY" in train.shortHelpString() and "CC-BY-4.0" in train.shortHelpString()
    download = QgsApplication.processingRegistry().algorithmById("scldeeplab:downloadweights")
    assert download.group() == "Set-up" and "not on disk (goes to" in download.shortHelpString()


def test_check_runtime_lists_the_weights_on_disk(provider, satlas):
    import processing

    processing.run("scldeeplab:downloadweights", {"NAME": "satlas-rgb"})
    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:environment", {}, feedback=feedback)
    assert result["WEIGHTS"] == "satlas-rgb"
    assert any("satlas-rgb: SatlasPretrain" in line and str(hub_file()) in line for line in feedback.infos)


def test_qgis_process_offline_message_with_the_mirror_from_the_environment(tmp_path, monkeypatch):
    from scl_deeplab.tests.conftest import run_qgis_process

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(weight_sets.BASE_URL_ENV, f"http://127.0.0.1:{port}/mirror")
    proc = run_qgis_process("run", "scldeeplab:downloadweights", "--", "NAME=ssl4eo-rgb")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"http://127.0.0.1:{port}/mirror/resnet50_sentinel2_rgb_moco-2b57ba8b.pth" in output
    assert "cannot reach 127.0.0.1" in output and f"copy it into {tmp_path / 'torch' / 'hub' / 'checkpoints'}" in output
    assert "Traceback" not in output


def test_a_proxy_refusal_in_qgis_names_the_proxy_and_qgis_network_settings(provider, satlas):
    import processing
    from qgis.core import QgsNetworkAccessManager, QgsProcessingException, QgsSettings

    with proxy_asking_for_login() as port:
        # As a user sets it in Settings > Options > Network.
        settings, keys = QgsSettings(), ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort")
        before = {key: settings.value(key) for key in keys if settings.contains(key)}
        for key, value in zip(keys, (True, "HttpProxy", "127.0.0.1", str(port))):
            settings.setValue(key, value)
        manager = QgsNetworkAccessManager.instance()
        manager.setupDefaultProxyAndCache()
        try:
            with pytest.raises(QgsProcessingException, match=f"proxy 127.0.0.1:{port} refused the "
                               r"request \(HTTP 407.*Settings > Options > Network"):
                processing.run("scldeeplab:downloadweights",
                               {"NAME": "satlas-rgb", "BASE_URL": "http://weights.example"})
        finally:
            for key in keys:
                settings.remove(key)
            for key, value in before.items():
                settings.setValue(key, value)
            manager.setupDefaultProxyAndCache()
