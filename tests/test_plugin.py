"""The plugin loads in a QGIS application: initGui registers the provider and its algorithms, unload removes them."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import scl_deeplab
from qgis.core import QgsApplication
from scl_deeplab.provider.provider import SclDeepLabProvider

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registry(qgis_iface, qgis_processing):
    """The processing registry without an SCL DeepLab provider, as QGIS has it before the plugin starts.

    The session's test provider (if another test registered it) is put back afterwards.
    """
    registry = QgsApplication.processingRegistry()
    had_provider = registry.providerById("scldeeplab") is not None
    if had_provider:
        registry.removeProvider("scldeeplab")
    yield registry
    if had_provider and registry.providerById("scldeeplab") is None:
        registry.addProvider(SclDeepLabProvider())


def expected_algorithm_ids() -> set[str]:
    """What the provider's loadAlgorithms adds, from a provider of our own."""
    provider = SclDeepLabProvider()
    provider.refreshAlgorithms()
    return {alg.id() for alg in provider.algorithms()}


def test_init_gui_registers_the_provider_and_unload_removes_it(registry, qgis_iface):
    expected = expected_algorithm_ids()
    assert {"scldeeplab:samplescene", "scldeeplab:makepatches"} <= expected
    plugin = scl_deeplab.classFactory(qgis_iface)
    try:
        plugin.initGui()
        provider = registry.providerById("scldeeplab")
        assert provider is not None
        assert provider.name() == "SCL DeepLab"
        assert {alg.id() for alg in provider.algorithms()} == expected
        for alg_id in expected:
            assert registry.algorithmById(alg_id) is not None
    finally:
        plugin.unload()
    assert registry.providerById("scldeeplab") is None
    assert registry.algorithmById("scldeeplab:makepatches") is None


def test_algorithms_sit_in_the_stage_groups(registry, qgis_iface):
    plugin = scl_deeplab.classFactory(qgis_iface)
    plugin.initGui()
    try:
        provider = registry.providerById("scldeeplab")
        groups = {alg.name(): alg.group() for alg in provider.algorithms()}
        assert groups["samplescene"] == "Data" and groups["makepatches"] == "Data"
        assert set(groups.values()) <= {"Data", "Training", "Prediction", "Evaluation", "Set-up"}
        assert all(alg.shortHelpString() for alg in provider.algorithms())
    finally:
        plugin.unload()


def test_provider_version_comes_from_metadata():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    assert meta.get("general", "hasProcessingProvider") == "yes"
    assert SclDeepLabProvider().versionInfo() == meta.get("general", "version")
