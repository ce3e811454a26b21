"""The student's ONNX graph, written op by op from its weights (not traced).

The traced graph (3,031 nodes) spent more than half of its time in elementwise
passes over (channels x samples) tensors: per layer the conditioning
interpolation (Slice, Sub, Mul, Add), the conv + conditioning Add, Split, Tanh,
Sigmoid, and the skip and residual Adds (docs/parallel_wavenet.md, Speed, 7).
Here (345 nodes, about 1.2x less CPU time) each layer is

    c_f, c_g = MatMul([f0, step] (frames, 2), [1; ramp] (2, hop))   the interpolation, one write
    g = FusedConv(h; c_f, Tanh) * FusedConv(h; c_g, Sigmoid)          conv + conditioning + gate
    skips = FusedConv(g; skips);  h = FusedConv(g; h)                 1x1 convs that add in place

with onnxruntime's FusedConv (com.microsoft; its 4th input is added before
the activation), causal padding as the conv's own left pad, and every
layer's conditioning projected once at the frame rate. The same function as
`ParallelWaveNet.generate` (the tests compare them); the graph needs
onnxruntime's CPU provider, which is what serves it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.wavenet import dilations

MS = "com.microsoft"


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self):
        self.nodes, self.inits, self.names, self.count = [], [], set(), 0

    def const(self, name: str, value) -> str:
        """An initializer; a name already given is the same constant (the first value)."""
        if name not in self.names:
            self.names.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        """An int64 vector constant (axes, slice bounds, shapes), named by its values."""
        return self.const("i64_" + "_".join(str(v).replace("-", "m") for v in values), np.array(values, np.int64))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, out: str | None = None,
           **attrs) -> str | list[str]:
        self.count += 1
        outs = [out] if out else [f"{op_type.lower()}_{self.count}_{i}" for i in range(n_out)]
        domain = MS if op_type == "FusedConv" else ""
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs


def _f32(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _cond_net(b: GraphBuilder, sd: dict, cfg) -> str:
    """(B, K, C) cond + (B,) speaker -> (B, cond_hidden, K), as models.wavernn.CondNet."""
    cond_t = b.op("Transpose", ["cond"], perm=[0, 2, 1])  # (B, C, K)
    spk = b.op("Gather", [b.const("spk_table", _f32(sd["cond_net.speaker.weight"])), "speaker"])
    spk = b.op("Unsqueeze", [spk, b.ints(2)])  # (B, D, 1), held over the K frames:
    one_channel = b.op("Slice", [cond_t, b.ints(0), b.ints(1), b.ints(1)])  # (B, 1, K)
    x = b.op("Concat", [cond_t, b.op("Expand", [spk, b.op("Shape", [one_channel])])], axis=1)
    pad = cfg.cond_kernel // 2
    for i in range(cfg.cond_layers):
        w, bias = _f32(sd[f"cond_net.net.{2 * i}.weight"]), _f32(sd[f"cond_net.net.{2 * i}.bias"])
        x = b.op("FusedConv", [x, b.const(f"cond_w{i}", w), b.const(f"cond_b{i}", bias)],
                 pads=[pad, pad], activation="Relu")
    return x


def _interp_rows(b: GraphBuilder, frames: str) -> str:
    """(B, N, K) frames -> (B, N, K, 2) rows [f[k], f[k + 1] - f[k]] (the last frame held)."""
    last = b.op("Slice", [frames, b.ints(-1), b.ints(2 ** 62), b.ints(2)])
    after = b.op("Slice", [frames, b.ints(1), b.ints(2 ** 62), b.ints(2)])
    step = b.op("Sub", [b.op("Concat", [after, last], axis=2), frames])
    rows = [b.op("Unsqueeze", [t, b.ints(3)]) for t in (frames, step)]
    return b.op("Concat", rows, axis=3)


def _flow(b: GraphBuilder, sd: dict, cfg, i: int, x: str, rows: list[str]) -> str:
    """One IAF flow: x (B, 1, T) -> x * exp(ln s) + mu (B, 1, T). rows: [f0, step] (B, R, K, 2) of
    its layers' filter and gate halves, in that order."""
    p, R = f"flows.{i}.", cfg.residual_channels
    W = lambda name: b.const(f"f{i}.{name}", _f32(sd[p + name]))  # noqa: E731
    dils = dilations(cfg.flow_layers[i], cfg.dilation_cycle)
    # the shifted input padded by one more zero: conv taps (x[t - 2], x[t - 1]) for output t
    head = b.op("Slice", [x, b.ints(0), b.ints(-1), b.ints(2)])
    h = b.op("Conv", [head, W("input.weight"), W("input.bias")], pads=[2, 0])
    skips = None
    for layer, d in enumerate(dils):
        w, bias = _f32(sd[f"{p}dilated.{layer}.weight"]), _f32(sd[f"{p}dilated.{layer}.bias"])
        gate = []
        for half, act in enumerate(("Tanh", "Sigmoid")):  # filter and gate halves
            c = b.op("MatMul", [rows[2 * layer + half], "ramp"])  # (B, R, K, hop): the interpolation
            c = b.op("Reshape", [c, b.ints(0, 0, -1)])  # (B, R, T)
            sl = slice(half * R, (half + 1) * R)
            gate.append(b.op("FusedConv", [h, b.const(f"f{i}.l{layer}.w{half}", w[sl]),
                                           b.const(f"f{i}.l{layer}.b{half}", bias[sl]), c],
                             dilations=[d], pads=[d, 0], activation=act))
        g = b.op("Mul", gate)
        if skips is None:
            skips = b.op("Conv", [g, W(f"skip.{layer}.weight"), W(f"skip.{layer}.bias")])
        else:
            skips = b.op("FusedConv", [g, W(f"skip.{layer}.weight"), W(f"skip.{layer}.bias"), skips])
        if layer < len(dils) - 1:  # the last layer's residual output is never read
            h = b.op("FusedConv", [g, W(f"res.{layer}.weight"), W(f"res.{layer}.bias"), h])
    y = b.op("FusedConv", [b.op("Relu", [skips]), W("out1.weight"), W("out1.bias")], activation="Relu")
    w2, b2 = _f32(sd[p + "out2.weight"]), _f32(sd[p + "out2.bias"])
    mu = b.op("Conv", [y, b.const(f"f{i}.mu_w", w2[:1]), b.const(f"f{i}.mu_b", b2[:1])])
    log_s = b.op("Conv", [y, b.const(f"f{i}.ls_w", w2[1:]), b.const(f"f{i}.ls_b", b2[1:])])
    log_s = b.op("Max", [log_s, b.const("ls_min", np.array(cfg.log_scale_min, np.float32))])
    return b.op("Add", [b.op("Mul", [x, b.op("Exp", [log_s])]), mu])


def build_student_graph(model) -> onnx.ModelProto:
    """The ParallelWaveNet's (z (B, T), cond (B, K, C), speaker (B,)) -> audio (B, T), T = K * hop."""
    cfg, sd = model.config, model.state_dict()
    b, R, hop = GraphBuilder(), cfg.residual_channels, cfg.hop_length
    b.const("ramp", np.stack([np.ones(hop), np.arange(hop) / hop]).astype(np.float32))  # (2, hop)
    hidden = _cond_net(b, sd, cfg)
    # every layer of every flow: its conditioning projection at the frame rate, one product
    proj = np.concatenate([model.flows[i].cond_weight().detach().float().numpy() for i in range(len(cfg.flow_layers))])
    frames = b.op("Conv", [hidden, b.const("cond_proj", proj[:, :, None])])  # (B, sum L * 2R, K)
    sizes = [R] * (2 * sum(cfg.flow_layers))
    rows = b.op("Split", [_interp_rows(b, frames), b.const("split_sizes", np.array(sizes, np.int64))],
                n_out=len(sizes), axis=1)
    x = b.op("Unsqueeze", ["z", b.ints(1)])  # (B, 1, T)
    start = 0
    for i, n in enumerate(cfg.flow_layers):
        x = _flow(b, sd, cfg, i, x, rows[2 * start:2 * (start + n)])
        start += n
    x = b.op("Clip", [x, b.const("lo", np.array(-1.0, np.float32)), b.const("hi", np.array(1.0, np.float32))])
    b.op("Squeeze", [x, b.ints(1)], out="audio")
    graph = helper.make_graph(
        b.nodes, "parallel_wavenet_student",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "samples"]),
         helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["batch", "frames", cfg.cond_channels]),
         helper.make_tensor_value_info("speaker", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
                             producer_name="sparsewave")


def export_student(model, path: str | Path) -> Path:
    onnx.save(build_student_graph(model.eval()), str(path))
    return Path(path)
