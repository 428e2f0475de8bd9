"""Which recipe a run follows: the seed's staged one on pretrained weights, or the from-scratch one.

With COCO or ImageNet weights the seed's order works: the head on a frozen
backbone, then layer4. From random weights a frozen backbone is a fixed random
projection, and its frozen BatchNorm layers still hold their initial statistics
(mean 0, variance 1), so its features are not even normalised: a head trained
on them learns little, and the features it learnt on change completely once the
backbone trains. So when ``PRETRAINED=auto`` finds no weights on disk, a new run
trains the whole network from the first step, with the learning rate asked for
(the head's default, 1e-3, suits AdamW on a freshly initialised network with
BatchNorm), warm-up and poly decay (``loop.py``), BatchNorm statistics
re-estimated before each validation (``batchnorm.py``), radiometric
augmentation (``dataset.py``), and random 128 px crops of the patches, sixteen
of a 512 px patch each epoch: the same pixels an epoch in sixteen times the
steps, which is what a network learning from nothing needs most. Crops keep
Make patches' default of 512 px usable: the first from-scratch recipe needed
128 px patches made for it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..progress import Progress

SCRATCH_CROP_PX = 128  # the from-scratch recipe's training crops, unless the run asks for its own


def for_start(config: Any, start_kind: str, *, resuming: bool, progress: Progress) -> Any:
    """``config`` (a ``train.TrainConfig``) as it should run from weights of ``start_kind``.

    Only a new run with ``pretrained="auto"`` that found no weights changes: a
    head or layer4 stage becomes the full network, training on ``SCRATCH_CROP_PX``
    crops unless ``crop_px`` is set, and the log says so. An explicit
    ``pretrained="none"`` keeps the stage asked for.
    """
    if resuming or start_kind != "none" or config.pretrained != "auto" or config.stage == "full":
        return config
    progress.info(
        f'No pretrained weights, so this run follows the from-scratch recipe: the "{config.stage}" stage would train '
        "on a frozen random backbone, which learns little; the full network trains instead (learning rate "
        f"{config.learning_rate:g} with warm-up and poly decay) on random {config.crop_px or SCRATCH_CROP_PX} px "
        "crops of the patches, as many an epoch as cover them. For the staged recipe provide pretrained weights, "
        'or set PRETRAINED to "none" to keep the stage.'
    )
    return replace(config, stage="full", crop_px=config.crop_px or SCRATCH_CROP_PX)
