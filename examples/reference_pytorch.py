"""A PyTorch baseline for timing: the pruning loop of the SynFlow paper's reference code.

Re-implements, from scratch and for timing comparison only, the pruning-at-initialisation loop of
github.com/ganguli-lab/Synaptic-Flow (``prune.py``, ``Pruners/pruners.py``, ``Layers/layers.py``):
masks are buffers multiplied into the weights in ``forward``; scores are global; each round keeps
the weights whose score is strictly above the k-th smallest (``torch.kthvalue``); densities follow
the exponential schedule ``d ** ((t + 1) / T)``; the model is in eval mode throughout. SynFlow runs
100 rounds, SNIP, GraSP and magnitude one round; SNIP and GraSP see one batch of 100 random
CIFAR-shaped samples (the values do not matter for timing). The networks are the CIFAR VGG-16-BN
and ResNet-20 of ``tfprune.models`` in PyTorch, with the same shapes and prunable kernels.

Each run builds a fresh model with ``torch.manual_seed(0)`` and times ``score`` and ``mask`` over
all rounds to a ``--compression`` mask (default 100, i.e. density 1/100); the medians of
``--repeats`` runs are printed as a markdown table, split into scoring and masking time. Run
``examples/scoring_benchmark.py`` beside it for tfprune on the same CPU.

    python examples/reference_pytorch.py [--models vgg16,resnet20] \\
        [--methods synflow,snip,grasp,magnitude] [--repeats 3] [--compression 100] [--json OUT.json]

This is not the reference code and not a pruning tool; do not use its masks for anything.
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VGG16_PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
PRUNABLE = {"vgg16": 14_715_584, "resnet20": 270_896}
ROUNDS = {"synflow": 100, "snip": 1, "grasp": 1, "magnitude": 1}
SAMPLES = 100


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


BUILDERS = {
    "vgg16": lambda: VGG(VGG16_PLAN),
    "resnet20": lambda: ResNet([(16, 3), (32, 3), (64, 3)]),
}


def build(name):
    """A freshly initialised model, seeded with 0; checks its prunable weight count."""
    torch.manual_seed(0)
    model = initialize(BUILDERS[name]())
    count = sum(p.numel() for _, p in masked_parameters(model))
    assert count == PRUNABLE[name], f"{name}: {count} prunable weights, expected {PRUNABLE[name]}"
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
    """Hg * w with logits / 200: g without graph, then grad of g . grad(create_graph), over |sum| + eps."""

    temperature = 200.0
    eps = 1e-10

    def _flat_grad(self, model, loss, x, y, create_graph):
        weights = [p for _, p in self.masked_params]
        grads = torch.autograd.grad(loss(model(x) / self.temperature, y), weights, create_graph=create_graph)
        return torch.cat([g.reshape(-1) for g in grads])

    def score(self, model, loss, batches):
        stopped = 0
        for x, y in batches:
            stopped = stopped + self._flat_grad(model, loss, x, y, create_graph=False)
        for x, y in batches:
            (stopped * self._flat_grad(model, loss, x, y, create_graph=True)).sum().backward()
        for _, p in self.masked_params:
            self.scores[id(p)] = (p.grad * p.detach()).detach().clone()
            p.grad.zero_()
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


def prune_batches():
    """One batch of SAMPLES random CIFAR-shaped inputs and labels, from a fixed generator."""
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(SAMPLES, 3, 32, 32, generator=gen), torch.randint(0, 10, (SAMPLES,), generator=gen))]


def one_run(model_name, method, density, batches):
    model = build(model_name)
    pruner = PRUNERS[method](masked_parameters(model))
    scoring, masking = prune_loop(model, pruner, batches, density, ROUNDS[method])
    expected = PRUNABLE[model_name] * density
    if abs(pruner.remaining() - expected) >= 5:  # the reference's own check, as a warning
        print(f"warning: {model_name}/{method}: {pruner.remaining()} weights remain, expected {expected:.0f}",
              file=sys.stderr)
    return scoring, masking, scoring + masking


def benchmark(model_names, methods, repeats, compression):
    """{model: {method: {"scoring", "masking", "total"}}}, medians over ``repeats`` runs."""
    batches = prune_batches()
    results = {}
    for model_name in model_names:
        for method in methods:
            runs = [one_run(model_name, method, 1.0 / compression, batches) for _ in range(repeats)]
            medians = [statistics.median(column) for column in zip(*runs)]
            results.setdefault(model_name, {})[method] = dict(zip(("scoring", "masking", "total"), medians))
            print(f"  {model_name} {method}: {medians[2]:.3f} s", file=sys.stderr, flush=True)
    return results


def table(results):
    lines = ["| model | method | rounds | scoring s | masking s | total s |",
             "|---|---|---:|---:|---:|---:|"]
    for model_name, by_method in results.items():
        for method, t in by_method.items():
            lines.append(f"| {model_name} | {method} | {ROUNDS[method]} | {t['scoring']:.3f} | "
                         f"{t['masking']:.3f} | {t['total']:.3f} |")
    return "\n".join(lines)


def csv_list(choices):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in items if s not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return items
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=csv_list(list(BUILDERS)), default=list(BUILDERS))
    parser.add_argument("--methods", type=csv_list(list(PRUNERS)), default=list(PRUNERS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", type=float, default=100.0, help="dense / remaining weights")
    parser.add_argument("--json", metavar="OUT.json", help="also write the medians here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.compression < 1:
        parser.error("--repeats and --compression must be at least 1")

    results = benchmark(args.models, args.methods, args.repeats, args.compression)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, compression {args.compression:g}, "
          f"median of {args.repeats}\n")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
