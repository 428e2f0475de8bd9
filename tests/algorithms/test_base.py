"""What every algorithm shares: an output path that is an input's is refused before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException
from scl_deeplab.model_core.data.synthetic import make_sample_scene


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    scene = make_sample_scene(folder / "scene.tif", folder / "scl.tif", size=64, seed=0)
    model = folder / "m.pt"
    model.write_bytes(b"a checkpoint")  # refused before it is read
    patches = folder / "index.json"
    patches.write_text('{"format": "scl-deeplab-patches"}')
    product = folder / "S2A_MSIL2A_20240101T000000_N0510_R001_T33UUU_20240101T000000.zip"
    product.write_bytes(b"PK")
    return {"scene": scene.image, "scl": scene.scl, "model": model, "patches": patches, "product": product}


CASES = [
    ("predict", lambda f: {"INPUT": f["scene"], "MODEL": f["model"], "OUTPUT": f["scene"]}, "OUTPUT", "INPUT"),
    ("predict", lambda f: {"INPUT": f["scene"], "MODEL": f["model"], "OUTPUT": "TEMPORARY_OUTPUT",
                           "OUTPUT_CONFIDENCE": f["model"]}, "OUTPUT_CONFIDENCE", "MODEL"),
    ("evaluate", lambda f: {"PREDICTION": f["scl"], "REFERENCE": f["scene"], "OUTPUT_DISAGREEMENT": f["scene"]},
     "OUTPUT_DISAGREEMENT", "REFERENCE"),
    ("evaluate", lambda f: {"PREDICTION": f["scl"], "REFERENCE": f["scene"],
                            "OUTPUT_REPORT": f["scl"].parent / "x" / ".." / "scl.tif"}, "OUTPUT_REPORT", "PREDICTION"),
    ("makepatches", lambda f: {"INPUT": f["scene"], "MASK": f["scl"], "PATCH_SIZE": 64,
                                 "OUTPUT_FOLDER": f["scl"]},
     "OUTPUT_FOLDER", "MASK"),
    ("trainhead", lambda f: {"PATCHES": f["patches"], "OUTPUT_MODEL": f["patches"],
                             "OUTPUT_CURVES": "TEMPORARY_OUTPUT"}, "OUTPUT_MODEL", "PATCHES"),
    ("finetunelayer4", lambda f: {"PATCHES": f["patches"], "MODEL": f["model"],
                                  "OUTPUT_MODEL": f["model"], "OUTPUT_CURVES": "TEMPORARY_OUTPUT"},
     "OUTPUT_MODEL", "MODEL"),
    ("preparel2a", lambda f: {"INPUT": f["product"], "OUTPUT_IMAGE": "TEMPORARY_OUTPUT",
                              "OUTPUT_SCL": f["product"]}, "OUTPUT_SCL", "INPUT"),
]


@pytest.mark.parametrize("algorithm,params,output,input_name", CASES)
def test_output_over_an_input_is_refused_naming_both(provider, files, tmp_path, algorithm, params, output,
                                                      input_name):
    import processing

    before = {name: path.read_bytes() for name, path in files.items()}
    with pytest.raises(QgsProcessingException, match=f"output {output} .* is the input {input_name}"):
        processing.run(f"scldeeplab:{algorithm}", {k: str(v) for k, v in params(files).items()})
    assert {name: path.read_bytes() for name, path in files.items()} == before
    assert not [p for p in files["scene"].parent.iterdir() if p.name.startswith(".")]


def test_two_outputs_on_one_file_are_refused(provider, tmp_path):
    import processing

    path = str(tmp_path / "both.tif")
    with pytest.raises(QgsProcessingException, match="outputs OUTPUT_IMAGE and OUTPUT_SCL are the same file"):
        processing.run("scldeeplab:samplescene", {"SIZE": 64, "OUTPUT_IMAGE": path, "OUTPUT_SCL": path})
    assert list(tmp_path.iterdir()) == []


def test_a_link_to_the_input_is_the_input(provider, files, tmp_path):
    import processing

    link = tmp_path / "link.tif"
    link.symlink_to(files["scene"])
    with pytest.raises(QgsProcessingException, match="output OUTPUT .* is the input INPUT"):
        processing.run("scldeeplab:predict", {"INPUT": str(files["scene"]), "MODEL": str(files["model"]),
                                              "OUTPUT": str(link)})
    assert shutil.os.path.islink(link)


@pytest.mark.parametrize("algorithm,params,match", [
    ("makepatches", {"PATCH_SIZE": 0}, r"\(PATCH_SIZE\) must be at least 8, not 0"),
    ("trainhead", {"EPOCHS": 0}, r"Epochs \(EPOCHS\) must be at least 1, not 0"),
    ("samplescene", {"SIZE": 100000}, r"\(SIZE\) must be at least \d+ and at most \d+, not 100000"),
])
def test_a_number_outside_its_limits_names_the_limit(provider, files, tmp_path, algorithm, params, match):
    import processing

    base = {
        "makepatches": {"INPUT": str(files["scene"]), "MASK": str(files["scl"]), "OUTPUT_FOLDER": str(tmp_path / "o")},
        "trainhead": {"PATCHES": str(files["patches"]), "OUTPUT_MODEL": str(tmp_path / "m.pt"),
                      "OUTPUT_CURVES": "TEMPORARY_OUTPUT"},
        "samplescene": {"OUTPUT_IMAGE": str(tmp_path / "a.tif"), "OUTPUT_SCL": str(tmp_path / "b.tif")},
    }[algorithm]
    with pytest.raises(QgsProcessingException, match=match):
        processing.run(f"scldeeplab:{algorithm}", {**base, **params})
    assert list(tmp_path.iterdir()) == []
