"""One training run's machinery: optimizer, schedule, loss, and the work of an epoch.

``train.py`` decides what to train and keeps the checkpoints; this module runs
the batches. Frozen parameters never reach the optimizer; mixed precision
follows ``device.pick_precision`` (bfloat16 autocast, or float16 with a grad
scaler on CUDA); tensors are channels-last. Under torchrun the training step
runs through DistributedDataParallel (gradients averaged over ranks) and the
validation sums its confusion matrix and loss over all ranks. Before each
validation the trainable BatchNorm layers' running statistics are re-estimated
(``batchnorm.py``). The learning rate warms up linearly over the first steps,
then falls by DeepLab's "poly" rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import scl
from ..errors import Canceled, DeviceError, SclDeepLabError, TrainingError
from ..evaluation import metrics
from ..net import model as model_lib
from ..net import pixel_head
from ..progress import Progress
from . import batchnorm, distributed
from .dataset import Manifest, class_weights, loaders, statistics_loader

WARMUP_SHARE, WARMUP_MAX_STEPS = 0.05, 200  # warm-up steps: this share of all steps, at most this many


def learning_rate_factor(step: int, total: int, warmup: int) -> float:
    """The learning rate at ``step`` of ``total`` as a share of the configured one.

    Rises linearly over the first ``warmup`` steps (Adam's first updates from random
    weights are large and noisy, and would push every pixel towards the most
    frequent class), then follows DeepLab's poly decay, (1 - progress) ** 0.9,
    towards zero at the last step.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return (1 - min(step, total - 1) / total) ** 0.9


@contextmanager
def device_errors(batch_size: int) -> Iterator[None]:
    """Turn running out of memory (GPU or CPU) into a ``DeviceError`` that says what to change."""
    try:
        yield
    except SclDeepLabError:
        raise
    except torch.OutOfMemoryError as exc:
        raise DeviceError(_out_of_memory(batch_size)) from exc
    except RuntimeError as exc:
        if "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
            raise DeviceError(_out_of_memory(batch_size)) from exc
        raise


def _out_of_memory(batch_size: int) -> str:
    if batch_size > 2:
        return (
            f"The device ran out of memory at BATCH_SIZE {batch_size}. Set BATCH_SIZE to {batch_size // 2} "
            "(or make smaller patches)."
        )
    return (
        f"The device ran out of memory at BATCH_SIZE {batch_size}. BATCH_SIZE 2 is the smallest: make smaller "
        "patches (PATCH_SIZE in Make patches), or use a device with more memory."
    )


class _Step(nn.Module):
    """``model.forward`` (frozen layers without autograd) as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return model_lib.forward(self.net, x)


class Loop:
    """Optimizer, schedule, loss and the batches of one training run."""

    def __init__(
        self,
        net: nn.Module,
        manifest: Manifest,
        config: Any,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        train_histogram: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        ranks: distributed.Ranks | None = None,
    ) -> None:
        """Set up loaders, AdamW on the trainable parameters, the poly schedule and the loss.

        ``config`` is a ``train.TrainConfig``; ``train_histogram`` holds training pixels by SCL code.
        With several ``ranks`` (a process group must be up) ``net`` trains through
        DistributedDataParallel, its BatchNorm synchronised across ranks.
        """
        self.net, self.config, self.device, self.dtype = net, config, device, autocast_dtype
        self.ranks = ranks or distributed.Ranks()
        self.step: nn.Module = _Step(net)
        if self.ranks.distributed:
            distributed.synchronise_batchnorm(net, device)
            self.step = DistributedDataParallel(
                self.step, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False
            )
        self.train_loader, self.val_loader = loaders(
            manifest,
            batch_size=config.batch_size,
            mean=mean,
            std=std,
            workers=config.workers,
            seed=config.seed,
            pin_memory=device.type == "cuda",
            ranks=self.ranks,
            crop=config.crop_px,
        )
        self.statistics_loader = statistics_loader(
            manifest, batch_size=config.batch_size, mean=mean, std=std, seed=config.seed, ranks=self.ranks,
            crop=config.crop_px,
        )
        head, pixel, backbone = model_lib.trainable_parameters(net)
        groups = [{"params": head, "lr": config.learning_rate}]
        if pixel:  # a small shallow network: it needs larger steps to learn within the epochs (pixel_head.py)
            groups.append({"params": pixel, "lr": config.learning_rate * pixel_head.LR_FACTOR})
        if backbone:
            groups.append({"params": backbone, "lr": config.learning_rate * config.backbone_lr_factor})
        # The fused kernel steps the head's tens of millions of parameters in one pass (several times faster).
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=fused)
        total = max(1, config.epochs * len(self.train_loader))
        warmup = min(WARMUP_MAX_STEPS, int(WARMUP_SHARE * total))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, total, warmup)
        )
        weight = class_weights(train_histogram).to(device) if config.class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=scl.IGNORE_INDEX)
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    @property
    def learning_rate(self) -> float:
        """The head's current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def _loss(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(outputs["out"].float(), target)
        if "aux" in outputs:
            loss = loss + self.config.aux_weight * self.criterion(outputs["aux"].float(), target)
        return loss

    def _to_device(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = image.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return image, target.to(self.device, non_blocking=True)

    def train_epoch(self, epoch: int, progress: Progress) -> float:
        """One pass over this rank's training batches; returns the mean training loss over all ranks.

        Raises:
            Canceled: the user asked to stop (checked before every batch).
            TrainingError: the loss is not finite.
        """
        model_lib.train_mode(self.net)
        self.train_loader.sampler.set_epoch(epoch)
        total, seen = 0.0, 0
        batches = len(self.train_loader)
        for b, (image, target) in enumerate(self.train_loader):
            if progress.is_canceled():
                raise Canceled("Canceled by the user.")
            learnable = bool((target != scl.IGNORE_INDEX).any())
            if not learnable and not self.ranks.distributed:
                continue  # only no-data pixels: nothing to learn, and the mean loss would be 0/0
            image, target = self._to_device(image, target)
            with self._autocast():
                outputs = self.step(image)
                # Other ranks wait for this one's gradients: a batch of only no-data pixels contributes zeros.
                loss = self._loss(outputs, target) if learnable else outputs["out"].float().sum() * 0.0
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"The training loss became {loss.item()} at batch {b + 1}; try a lower LEARNING_RATE "
                    "(or precision float32)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            if learnable:
                total += loss.item() * image.shape[0]
                seen += image.shape[0]
            progress.set_progress(100.0 * (b + 1) / batches)
        sums = distributed.sum_across(torch.tensor([total, float(seen)], dtype=torch.float64, device=self.device))
        return float(sums[0] / sums[1].clamp(min=1))

    def reestimate_batchnorm(self, epoch: int) -> int:
        """Running statistics of the trainable BatchNorm layers from un-augmented training patches.

        Returns the number of batches used (the same on every rank).
        """
        self.statistics_loader.sampler.set_epoch(epoch)
        batches = (self._to_device(image, target)[0] for image, target in self.statistics_loader)

        def forward(image: torch.Tensor) -> None:
            with self._autocast():
                self.net(image)

        max_batches = max(1, -(-batchnorm.PATCHES // (self.config.batch_size * self.ranks.world_size)))
        return batchnorm.reestimate(self.net, batches, forward, max_batches=max_batches)

    @torch.no_grad()
    def validate(self) -> tuple[float, metrics.Scores]:
        """Validation loss and scores over all ranks, from a confusion matrix accumulated on the device."""
        self.net.eval()
        n = scl.NUM_CLASSES
        confusion = torch.zeros((n, n), dtype=torch.int64, device=self.device)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss x patches, patches
        for image, target in self.val_loader:
            image, target = self._to_device(image, target)
            with self._autocast():
                outputs = self.net(image)
            loss = self._loss(outputs, target)
            if torch.isfinite(loss):  # a batch of only no-data pixels has no loss
                sums += torch.tensor([loss.item() * image.shape[0], image.shape[0]], dtype=torch.float64,
                                     device=self.device)
            confusion += metrics.confusion_from_indices_torch(target, outputs["out"].argmax(1))
        distributed.sum_across(confusion)
        distributed.sum_across(sums)
        loss = float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")
        return loss, metrics.scores(confusion.cpu().numpy())
