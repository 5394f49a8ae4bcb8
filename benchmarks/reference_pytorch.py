"""One timed run of a PyTorch baseline — the SynFlow paper's pruning loop — in a fresh process.

Re-implements, from scratch and for timing comparison only, the pruning-at-initialisation loop of
github.com/ganguli-lab/Synaptic-Flow (``prune.py``, ``Pruners/pruners.py``, ``Layers/layers.py``):
masks are buffers multiplied into the weights in ``forward``; scores are global; each round keeps
the weights whose score is strictly above the k-th smallest (``torch.kthvalue``); densities follow
the exponential schedule ``d ** ((t + 1) / T)`` to compression 100. SynFlow runs 100 rounds, SNIP,
GraSP and magnitude one round. Choices made so that both sides do the same work as tfprune:

* **Models**: ``vgg16`` and ``resnet20`` are the CIFAR VGG-16-BN and ResNet-20 of
  ``tfprune.models`` in PyTorch (same shapes and prunable kernels, Kaiming-normal kernels).
  ``resnet50`` and ``mobilenetv2`` are ``torchvision.models.resnet50`` and
  ``mobilenet_v2`` (``weights=None``, torchvision's own initialisation) with every ``nn.Conv2d``
  and ``nn.Linear`` replaced by its masked version (same stride, padding, dilation, groups and
  bias; depthwise convolutions are ``nn.Conv2d`` with groups, so they are masked too, as tfprune
  masks Keras's ``DepthwiseConv2D``). Biases and batch norm are never pruned, as in tfprune by
  default, so Keras's conv biases (which torchvision's convolutions lack) change no count: both
  sides prune 25,502,912 (ResNet50) and 3,469,760 (MobileNetV2, 64,224 of them depthwise) weights.
  Each model's count is asserted against ``ModelSpec.prunable``.
* **Data**: SNIP and GraSP see random NCHW images with labels in [0, classes): 100 of 32×32 for
  the CIFAR models, 32 of 224×224 for the others (the values do not change the work).
* **SNIP**: eval mode (batch norm on running statistics), one batch of all samples (as
  tfprune's SNIP without ``batch_size``).
* **GraSP**, as the authors' code (``pruner/GraSP.py`` of github.com/alecwangcq/GraSP), which
  tfprune's default follows: the network is scored on a ``copy.deepcopy`` whose ``nn.Linear``
  weights are re-drawn with ``nn.init.xavier_normal_``, its batch norm layers in ``train()`` mode
  (batch statistics, differentiated through; the copy's running statistics change, the model's do
  not). Only batch norm: MobileNetV2's dropout stays in eval mode, as tfprune changes only batch
  norm (the authors' networks have no dropout, so their whole-network ``train()`` is the same);
  the samples are split into two halves, the stopped gradient g is summed over both halves, then
  ``H g`` is the summed backward of ``g · ∂L/∂θ`` (``create_graph=True``) over each half;
  logits are divided by 200, and the score ``θ · H g`` is divided by ``|Σ| + 1e-10``.
* **SynFlow**: eval mode; |·| of every state tensor in place, one all-ones input, signs restored.
  ReLU6 (MobileNetV2) is left as it is (tfprune linearises it for the score; the work is the same).

Timed: ``score`` and ``mask`` summed over the rounds (the masked model is built with its masks, so
there is no wrapping step: ``total`` = scoring + masking); ``build`` (model construction) is
reported but not compared. Prints one JSON line with those times, ``rss_before_mb`` (VmRSS just
before pruning), ``peak_rss_mb`` (ru_maxrss at the end), the prunable and kept weight counts,
versions and thread counts:

    python benchmarks/reference_pytorch.py resnet20 snip

``benchmarks/benchmark_vs_reference.py`` runs it beside ``benchmarks/scoring_benchmark.py``.
This is not the reference code and not a pruning tool; do not use its masks for anything.
"""

import copy
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from benchmark_vs_reference import COMPRESSION, MODELS, ROUNDS, emit, peak_rss_mb, rss_mb, run_arguments

VGG16_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


# ---------------------------------------------------------------------------------------------
# Masked layers and models
# ---------------------------------------------------------------------------------------------

class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a ``weight_mask`` buffer in ``forward``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def forward(self, x):
        return self._conv_forward(x, self.weight_mask * self.weight, self.bias)


class MaskedLinear(nn.Linear):
    """A dense layer whose kernel is multiplied by a ``weight_mask`` buffer in ``forward``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def forward(self, x):
        return F.linear(x, self.weight_mask * self.weight, self.bias)


def conv_bn(f_in, f_out, kernel_size, stride=1):
    """A same-padded convolution without bias, then batch normalisation."""
    conv = MaskedConv2d(f_in, f_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(f_out))


class VGG(nn.Module):
    """CIFAR "lottery" VGG: Conv3x3-BN-ReLU per plan entry, 2x2 max-pool at "M", then 2x2 avg-pool."""

    def __init__(self, plan, num_classes=10):
        super().__init__()
        layers, filters = [], 3
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [conv_bn(filters, spec, 3), nn.ReLU()]
                filters = spec
        self.features = nn.Sequential(*layers)
        self.fc = MaskedLinear(filters, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(self.features(x), 2)
        return self.fc(torch.flatten(x, 1))


class Block(nn.Module):
    """A basic block: two Conv3x3-BN around an identity or 1x1 conv-BN shortcut."""

    def __init__(self, f_in, f_out, stride):
        super().__init__()
        self.branch1 = conv_bn(f_in, f_out, 3, stride)
        self.branch2 = conv_bn(f_out, f_out, 3)
        changes_shape = stride != 1 or f_in != f_out
        self.shortcut = conv_bn(f_in, f_out, 1, stride) if changes_shape else nn.Identity()

    def forward(self, x):
        out = self.branch2(F.relu(self.branch1(x)))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """CIFAR "lottery" ResNet: stem, stages of basic blocks, global average pooling, dense head."""

    def __init__(self, stages, num_classes=10):
        super().__init__()
        filters = stages[0][0]
        self.stem = conv_bn(3, filters, 3)
        blocks = []
        for s, (f_out, n) in enumerate(stages):
            for b in range(n):
                blocks.append(Block(filters, f_out, 2 if s > 0 and b == 0 else 1))
                filters = f_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = MaskedLinear(filters, num_classes)

    def forward(self, x):
        out = self.blocks(F.relu(self.stem(x)))
        out = F.avg_pool2d(out, out.shape[3])
        return self.fc(torch.flatten(out, 1))


def initialize(model):
    """Kaiming-normal kernels, zero biases, BN scale 1 and shift 0 (the reference's init)."""
    for m in model.modules():
        if isinstance(m, (MaskedConv2d, MaskedLinear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def with_masked_layers(module):
    """``module`` with every ``nn.Conv2d`` and ``nn.Linear`` inside replaced by its masked version.

    The replacement keeps the layer's arguments and shares its weight and bias parameters.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            masked = MaskedConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, groups=child.groups,
                                  bias=child.bias is not None, padding_mode=child.padding_mode)
        elif isinstance(child, nn.Linear):
            masked = MaskedLinear(child.in_features, child.out_features, bias=child.bias is not None)
        else:
            with_masked_layers(child)
            continue
        masked.weight, masked.bias = child.weight, child.bias
        setattr(module, name, masked)
    return module


BUILDERS = {
    "vgg16": lambda: initialize(VGG(VGG16_PLAN)),
    "resnet20": lambda: initialize(ResNet([(16, 3), (32, 3), (64, 3)])),
    "resnet50": lambda: with_masked_layers(torchvision.models.resnet50(weights=None)),
    "mobilenetv2": lambda: with_masked_layers(torchvision.models.mobilenet_v2(weights=None)),
}


def build(name):
    """A freshly initialised model, seeded with 0; checks its prunable weight count against tfprune's."""
    torch.manual_seed(0)
    model = BUILDERS[name]()
    count = sum(p.numel() for _, p in masked_parameters(model))
    if count != MODELS[name].prunable:
        raise AssertionError(f"{name}: {count} prunable weights, expected {MODELS[name].prunable}")
    return model


def masked_parameters(model):
    """(mask, weight) pairs of the prunable kernels; biases and BN are not pruned."""
    return [(m.weight_mask, m.weight) for m in model.modules() if isinstance(m, (MaskedConv2d, MaskedLinear))]


# ---------------------------------------------------------------------------------------------
# Pruners (semantics of the reference's Pruners/pruners.py)
# ---------------------------------------------------------------------------------------------

class Pruner:
    """Global-scope pruner: ``score`` fills ``self.scores``, ``mask`` thresholds them."""

    def __init__(self, masked_params):
        self.masked_params = masked_params
        self.scores = {}

    def score(self, model, loss, batches):
        raise NotImplementedError

    def mask(self, density):
        """Zeroes the masks where the score is <= the k-th smallest, k = (1 - density) * n."""
        all_scores = torch.cat([torch.flatten(v) for v in self.scores.values()])
        k = int((1.0 - density) * all_scores.numel())
        if k < 1:
            return
        threshold, _ = torch.kthvalue(all_scores, k)
        zero, one = torch.tensor([0.0]), torch.tensor([1.0])
        for m, p in self.masked_params:
            m.copy_(torch.where(self.scores[id(p)] <= threshold, zero, one))

    def remaining(self):
        return int(sum(m.sum().item() for m, _ in self.masked_params))

    def _normalise(self, norm):
        for _, p in self.masked_params:
            self.scores[id(p)].div_(norm)


class Magnitude(Pruner):
    """|w|."""

    def score(self, model, loss, batches):
        for _, p in self.masked_params:
            self.scores[id(p)] = p.detach().clone().abs_()


class SNIP(Pruner):
    """|dL/dmask| = |g * w| over the batches, divided by its sum."""

    def score(self, model, loss, batches):
        for m, _ in self.masked_params:
            m.requires_grad_(True)
        for x, y in batches:
            loss(model(x), y).backward()
        for m, p in self.masked_params:
            self.scores[id(p)] = m.grad.detach().clone().abs_()
            p.grad.zero_()
            m.grad.zero_()
            m.requires_grad_(False)
        self._normalise(torch.sum(torch.cat([torch.flatten(v) for v in self.scores.values()])))


class GraSP(Pruner):
    """Hg * w as the authors' code: on a copy with batch norm in train() mode and xavier-normal Linear
    weights, two half batches, logits / 200; g without graph, then the grad of g . grad(create_graph)
    per half; over |sum| + eps."""

    temperature = 200.0
    eps = 1e-10

    def _flat_grad(self, model, weights, loss, x, y, create_graph):
        grads = torch.autograd.grad(loss(model(x) / self.temperature, y), weights, create_graph=create_graph)
        return torch.cat([g.reshape(-1) for g in grads])

    def score(self, model, loss, batches):
        net = copy.deepcopy(model).eval()
        for m in net.modules():
            if isinstance(m, MaskedLinear):
                nn.init.xavier_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                m.train()
        weights = [p for _, p in masked_parameters(net)]
        halves = [(x[part], y[part]) for x, y in batches
                  for part in (slice(None, len(x) // 2), slice(len(x) // 2, None))]
        stopped = 0
        for x, y in halves:
            stopped = stopped + self._flat_grad(net, weights, loss, x, y, create_graph=False)
        for x, y in halves:
            (stopped * self._flat_grad(net, weights, loss, x, y, create_graph=True)).sum().backward()
        for (_, p), w in zip(self.masked_params, weights):
            self.scores[id(p)] = (w.grad * w.detach()).detach()
        all_scores = torch.cat([torch.flatten(v) for v in self.scores.values()])
        self._normalise(torch.abs(torch.sum(all_scores)) + self.eps)


class SynFlow(Pruner):
    """|w * dR/dw| with R = sum of the output of the |.|-linearised model on an all-ones input."""

    @staticmethod
    @torch.no_grad()
    def _linearize(model):
        signs = {}
        for name, tensor in model.state_dict().items():
            signs[name] = torch.sign(tensor)
            tensor.abs_()
        return signs

    @staticmethod
    @torch.no_grad()
    def _nonlinearize(model, signs):
        for name, tensor in model.state_dict().items():
            tensor.mul_(signs[name])

    def score(self, model, loss, batches):
        signs = self._linearize(model)
        x, _ = batches[0]
        ones = torch.ones([1] + list(x.shape[1:]))  # float32, as the reference (model.double() is off)
        torch.sum(model(ones)).backward()
        for _, p in self.masked_params:
            self.scores[id(p)] = (p.grad * p).detach().clone().abs_()
            p.grad.zero_()
        self._nonlinearize(model, signs)


PRUNERS = {"synflow": SynFlow, "snip": SNIP, "grasp": GraSP, "magnitude": Magnitude}


# ---------------------------------------------------------------------------------------------
# Timed prune loop
# ---------------------------------------------------------------------------------------------

def prune_loop(model, pruner, batches, density, rounds):
    """Score and mask ``rounds`` times to ``density`` (exponential schedule); returns (scoring, masking) s."""
    model.eval()
    loss = nn.CrossEntropyLoss()
    scoring = masking = 0.0
    for t in range(rounds):
        start = time.perf_counter()
        pruner.score(model, loss, batches)
        middle = time.perf_counter()
        pruner.mask(density ** ((t + 1) / rounds))
        scoring += middle - start
        masking += time.perf_counter() - middle
    return scoring, masking


def random_batches(spec):
    """One batch of ``spec.samples`` random NCHW inputs and labels in [0, classes), seeded."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(spec.samples, 3, spec.image_size, spec.image_size, generator=gen)
    return [(x, torch.randint(0, spec.classes, (spec.samples,), generator=gen))]


def one_run(model_name, method):
    """Builds and prunes once; returns the JSON record (see the module docstring)."""
    spec = MODELS[model_name]
    batches = random_batches(spec)
    start = time.perf_counter()
    model = build(model_name)
    build_seconds = time.perf_counter() - start
    pruner = PRUNERS[method](masked_parameters(model))
    prunable = sum(p.numel() for _, p in pruner.masked_params)
    rss_before = rss_mb()
    scoring, masking = prune_loop(model, pruner, batches, 1.0 / COMPRESSION, ROUNDS[method])
    peak = peak_rss_mb()
    kept = pruner.remaining()
    expected = prunable / COMPRESSION
    if abs(kept - expected) >= 5:  # the reference's own check, as a warning
        print(f"warning: {model_name}/{method}: {kept} weights remain, expected {expected:.0f}", file=sys.stderr)
    return dict(
        framework="reference", model=model_name, method=method, rounds=ROUNDS[method],
        samples=spec.samples if method in ("snip", "grasp") else 0, compression=COMPRESSION, prunable=prunable,
        kept=kept, build=build_seconds, scoring=scoring, masking=masking, total=scoring + masking,
        rss_before_mb=rss_before, peak_rss_mb=peak,
        versions=dict(torch=torch.__version__, torchvision=torchvision.__version__, python=platform.python_version()),
        threads=dict(intra_op=torch.get_num_threads(), inter_op=torch.get_num_interop_threads(), cpus=os.cpu_count()))


def main():
    args = run_arguments(__doc__.splitlines()[0], PRUNERS)
    emit(one_run(args.model, args.method))


if __name__ == "__main__":
    main()
