"""BatchNorm re-estimation: exact averages in the layers that train, frozen layers byte-identical."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from scl_deeplab.model_core.net import model as model_lib
from scl_deeplab.model_core.training import batchnorm
from scl_deeplab.tests.models import one_torch_thread
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and immune to the other core being busy."""
    with one_torch_thread():
        yield


def two_stage_net() -> nn.Sequential:
    """conv-BN (frozen) then conv-BN (training), with a dropout between to show eval mode is used."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 1), bn1=nn.BatchNorm2d(4), drop=nn.Dropout(0.5), conv2=nn.Conv2d(4, 5, 1),
        bn2=nn.BatchNorm2d(5)))
    for p in [*net.conv1.parameters(), *net.bn1.parameters()]:
        p.requires_grad_(False)
    net.bn1.running_mean.fill_(0.3)
    net.bn1.running_var.fill_(2.0)
    return net


def test_trainable_layers_get_the_plain_average_of_their_batches_and_frozen_ones_stay():
    net = two_stage_net()
    batches = [torch.randn(2, 3, 6, 6) * (i + 1) + i for i in range(4)]
    frozen = {k: v.clone() for k, v in net.bn1.state_dict().items()}
    net.bn2.running_mean.fill_(7.0)  # stale statistics, as after fast-moving weights
    net.train()

    used = batchnorm.reestimate(net, batches, net, max_batches=3)

    assert used == 3
    assert not net.training and not net.bn2.training and net.bn2.momentum == 0.1
    assert all(torch.equal(v, net.bn1.state_dict()[k]) for k, v in frozen.items())
    with torch.no_grad():  # the inputs bn2 saw: frozen front in eval mode, no dropout
        inputs = [net.conv2(net.bn1(net.conv1(b))) for b in batches[:3]]
    means = torch.stack([x.mean((0, 2, 3)) for x in inputs])
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs])
    torch.testing.assert_close(net.bn2.running_mean, means.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net.bn2.running_var, variances.mean(0), rtol=1e-5, atol=1e-5)


def test_no_batches_leave_every_statistic_as_it_was():
    net = two_stage_net()
    net.bn2.running_mean.fill_(7.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert batchnorm.reestimate(net, [], net, max_batches=4) == 0
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_real_deeplab_layer4_stage_changes_only_trainable_batchnorms():
    torch.manual_seed(0)
    deeplab = model_lib.build_model()
    model_lib.freeze_for(deeplab, "layer4")
    before = {k: v.clone() for k, v in deeplab.state_dict().items()}
    batches = [torch.rand(2, 3, 32, 32) for _ in range(2)]

    assert batchnorm.reestimate(deeplab, batches, deeplab, max_batches=2) == 2

    changed = {k for k, v in deeplab.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "the trainable layers' statistics were re-estimated"
    assert all(k.startswith(("backbone.layer4.", "classifier.")) for k in changed), sorted(changed)[:3]
    assert all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for k in changed)
    assert {"backbone.layer4.2.bn3.running_var", "classifier.2.running_mean"} <= changed
    names = {n for n, m in deeplab.named_modules() if m in batchnorm.trainable_batchnorms(deeplab)}
    assert "backbone.layer3.5.bn3" not in names and "backbone.layer4.0.bn1" in names
