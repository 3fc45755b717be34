"""Every column a row can have, declared once: name, unit, how the table shows it, whether it is a cost that
grows with the input. The profiler fills them, the table, CSV, JSON, the sweep's fits and plots, ``compare``
and ``report`` read them; a new measurement declares its columns here.

Pure and torch-free (a bottom layer: docs/ARCHITECTURE.md): ``compare`` and ``report`` read it without
importing torch or the profiler.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a row.

    ``style`` says how the table shows it: ``si`` (a count with an SI prefix), ``ms`` (median ± the
    ``*_iqr_ms`` column beside it), ``num`` (a number), ``text``; ``label`` is the table header (empty: not in
    the table, only in CSV / JSON). ``metric`` marks a cost that grows with the input: sweeps fit and plot it.
    ``lower_is_better`` orients comparisons (None: not a cost, e.g. a ratio or a text).
    """

    name: str
    unit: str = ""
    label: str = ""
    style: str = "num"
    metric: bool = False
    lower_is_better: bool | None = True
    describe: str = ""

    @property
    def axis_label(self) -> str:
        """A plot axis label: the description's head with the unit."""
        head = self.describe.split(":")[0] if self.describe else self.name
        return f"{head} ({self.unit})" if self.unit and self.unit not in head else head


# Identity: which block, which shape, and whether it ran.
IDENTITY = (
    Column("block", style="text", label="block", lower_is_better=None),
    Column("shape", style="text", label="shape", lower_is_better=None),
    Column("status", style="text", label="status", lower_is_better=None),
)

# A row of a network (``--network``): which network, how its blocks were placed, how many. Empty for a block.
NETWORK = (
    Column("network", style="text", label="network", lower_is_better=None, describe="the network the block is in"),
    Column("placement", style="text", label="placement", lower_is_better=None,
           describe="where the blocks are (residual, stage, replace-conv, mobilenet-v2, token-mixer)"),
    Column("stages", style="text", lower_is_better=None, describe="the stages that hold blocks, e.g. 1,2,3,4"),
    Column("inserted", label="blocks", lower_is_better=None, describe="how many blocks were placed"),
)

# A network row against the plain network's row (block = none) of the same run, shape and settings, and the
# placed blocks' share of the network's cost.
NETWORK_DELTAS = (
    Column("added_params", label="+params", style="si", describe="parameters added to the plain network"),
    Column("added_macs", label="+MACs", style="si", describe="MACs added to the plain network"),
    Column("added_fwd_ms", unit="ms", label="+fwd ms", describe="forward time added to the plain network's"),
    Column("added_train_ms", unit="ms", label="+train ms", describe="training-step time added to the plain network's"),
    Column("attn_macs_share", label="attn MACs", lower_is_better=None,
           describe="the placed blocks' share of the network's MACs (0-1)"),
    Column("attn_time_share", label="attn time", lower_is_better=None,
           describe="the placed blocks' share of an eager forward's time (0-1), timed by hooks"),
)

# Where and how the row was measured: enough to match two files and tell them apart.
ENVIRONMENT = (
    Column("mode", style="text", lower_is_better=None, describe="infer, train or both"),
    Column("overrides", style="text", lower_is_better=None, describe="constructor overrides (--set), k=v;k=v"),
    Column("compile", style="text", lower_is_better=None, describe="torch.compile mode, empty when eager"),
    Column("amp", style="text", lower_is_better=None, describe="autocast dtype, empty when off"),
    Column("channels_last", style="text", lower_is_better=None, describe="channels-last memory format"),
    Column("input_scale", lower_is_better=None, describe="the inputs' standard deviation (--input-scale; 1: unit)"),
    Column("sdpa_backend", style="text", lower_is_better=None,
           describe="the SDPA backend asked for (--sdpa-backend; auto: torch's choice)"),
    Column("runtime", style="text", label="runtime", lower_is_better=None,
           describe="what ran the forward (--runtime): torch.export, onnxruntime or openvino; empty: eager PyTorch"),
    Column("device", style="text", lower_is_better=None),
    Column("device_name", style="text", lower_is_better=None, describe="CPU model or GPU name"),
    Column("dtype", style="text", lower_is_better=None),
    Column("threads", lower_is_better=None),
    # How busy the machine was (attnzoo.profiling.load): a time measured with fewer free cores than threads
    # is not the block's, and the table's footer says so.
    Column("load", lower_is_better=None, describe="the machine's 1-minute load average when the row was measured"),
    Column("busy", lower_is_better=None,
           describe="other runnable tasks (not this process's) while the row was measured"),
    Column("cores", lower_is_better=None, describe="the CPU cores this process could run on"),
    Column("torch", style="text", lower_is_better=None),
    Column("cuda_version", style="text", lower_is_better=None),
    Column("attnzoo_version", style="text", lower_is_better=None),
    Column("timestamp", style="text", lower_is_better=None, describe="when the row finished (UTC, ISO 8601)"),
    # Which unit of a campaign the row is and where it ran (attnzoo.campaign).
    Column("unit_id", style="text", lower_is_better=None,
           describe="the unit's id: a hash of its block, shape, settings and attnzoo version"),
    Column("host", style="text", lower_is_better=None, describe="the machine that measured the row"),
    Column("node", style="text", lower_is_better=None, describe="the Ray node id (empty without Ray)"),
    Column("device_index", style="text", lower_is_better=None,
           describe="the physical GPU on its host that Ray gave the unit (empty otherwise)"),
)


# The measurements' columns, one group per measurement of attnzoo.profiling.measurements (in its order).
PARAMETERS = (
    Column("params", label="params", describe="parameters"),
    Column("trainable_params", describe="parameters that require gradients"),
)
MACS = (
    Column("macs", label="MACs", style="si", metric=True, describe="MACs: multiply-adds of one forward"),
    Column("flops", style="si", describe="FLOPs: 2 x MACs"),
    Column("uncounted_ops", label="uncounted ops", style="text", lower_is_better=None,
           describe="operators with no MAC formula"),
    Column("counter", style="text", lower_is_better=None, describe="which counter counted the MACs"),
)
BYTES = (
    Column("bytes_min", unit="B", label="bytes min", style="si", metric=True,
           describe="compulsory bytes: inputs, outputs and parameters once each"),
    Column("bytes_eager", unit="B", style="si", metric=True,
           describe="bytes moved by the operators of an eager forward"),
)
COMPILING = (
    Column("compile_s", unit="s", label="compile s", describe="compile time: the first calls under --compile"),
    Column("compile_cache", style="text", lower_is_better=None,
           describe="warm: Inductor's on-disk cache held the compiled code already; cold: it was written"),
)
FORWARD = (
    Column("fwd_ms", unit="ms", label="fwd ms", style="ms", metric=True, describe="forward latency: median"),
    Column("fwd_iqr_ms", unit="ms", describe="forward latency: interquartile range"),
    Column("fwd_runs", lower_is_better=None, describe="timed forward calls"),
    Column("fwd_img_s", unit="img/s", lower_is_better=False, describe="forward throughput: images per second"),
)
FORWARD_MEMORY = (
    Column("fwd_peak_mib", unit="MiB", label="fwd MiB", metric=True,
           describe="forward peak memory: above inputs and weights"),
)
ROOFLINE = (
    Column("intensity", unit="FLOP/B", label="FLOP/B", lower_is_better=None,
           describe="arithmetic intensity: FLOPs per compulsory byte"),
    Column("bandwidth_gbs", unit="GB/s", lower_is_better=None,
           describe="the device's bandwidth at the row's working set"),
    Column("roofline_ms", unit="ms", describe="the fastest forward the device's ceilings allow"),
    Column("bound", label="bound", style="text", lower_is_better=None, describe="compute or memory"),
    Column("of_limit", label="of limit", lower_is_better=False,
           describe="roofline_ms / fwd_ms: 1.0 is at the hardware's limit"),
    Column("efficiency", lower_is_better=False, describe="achieved FLOP/s over the compute ceiling"),
    Column("device_gflops", unit="GFLOP/s", lower_is_better=None,
           describe="the compute ceiling: the faster of a matmul and a 3x3 convolution"),
    Column("ceilings_at", style="text", lower_is_better=None,
           describe="when the device's ceilings were measured (UTC; kept in the machine's cache)"),
)
TRAINING = (
    Column("train_ms", unit="ms", label="train ms", style="ms", metric=True,
           describe="training step latency: median"),
    Column("train_iqr_ms", unit="ms", describe="training step latency: interquartile range"),
    Column("train_runs", lower_is_better=None, describe="timed training steps"),
    Column("train_img_s", unit="img/s", lower_is_better=False, describe="training throughput: images per second"),
)
TRAINING_MEMORY = (
    Column("train_peak_mib", unit="MiB", label="train MiB", metric=True,
           describe="training step peak memory: above inputs and weights"),
)
# What a mode costs in accuracy: the measured module's output (and, when a row trains, its input's gradient)
# against eager float32 on the same inputs and weights; empty for an eager float32 row, which is the reference.
NUMERICS = (
    Column("max_abs_err", label="max err", lower_is_better=True,
           describe="output's largest absolute difference to eager float32 (same inputs, same weights)"),
    Column("rel_err", label="rel err", lower_is_better=True,
           describe="max_abs_err over the largest magnitude of the eager float32 output"),
    Column("nonfinite", label="NaN/inf", lower_is_better=True,
           describe="NaN and inf values in the output (0: all finite)"),
    Column("grad_max_abs_err", lower_is_better=True,
           describe="the input gradient's largest absolute difference to eager float32 (train and both)"),
    Column("grad_rel_err", lower_is_better=True, describe="grad_max_abs_err over the largest float32 gradient"),
    Column("grad_nonfinite", lower_is_better=True, describe="NaN and inf values in the input gradient"),
    Column("sdpa_kernel", style="text", lower_is_better=None,
           describe="the scaled_dot_product_attention kernel that ran (math, flash, efficient, cudnn; empty: none)"),
)
# A row run in another runtime (--runtime): how the block was exported and whether the export holds at another
# size; its output's error against eager float32 is in NUMERICS, its time in FORWARD. Empty for an eager row.
DEPLOY = (
    Column("export", label="export", style="text", lower_is_better=None,
           describe="ok, or why the export failed, naming the operator (e.g. torchvision::deform_conv2d)"),
    Column("exporter", style="text", lower_is_better=None,
           describe="what exported it: dynamo (torch.onnx.export(dynamo=True)), torchscript (the fallback, with why "
                    "dynamo failed) or torch.export"),
    Column("opset", lower_is_better=None, describe="the ONNX opset of the exported file"),
    Column("onnx_ops", style="text", lower_is_better=None,
           describe="the ONNX operators of the exported graph and how many of each (MatMul:4 Softmax:1)"),
    Column("export_s", unit="s", label="export s",
           describe="export time: the export and the runtime's session (outside the timings)"),
    Column("runtime_version", style="text", lower_is_better=None, describe="the runtime's version"),
    Column("dynamic_hw", label="dynamic H/W", style="text", lower_is_better=None,
           describe="exported with dynamic H and W (N for tokens), does it reproduce eager at a second size: yes, "
                    "specialised, or why not"),
)
MEASURED_GROUPS = (PARAMETERS, MACS, BYTES, COMPILING, FORWARD, FORWARD_MEMORY, ROOFLINE, TRAINING, TRAINING_MEMORY,
                   NUMERICS, DEPLOY)

#: Every column of a row, in order: identity, measurements, environment.
ALL_COLUMNS: tuple[Column, ...] = (IDENTITY + NETWORK + tuple(c for group in MEASURED_GROUPS for c in group)
                                   + NETWORK_DELTAS + ENVIRONMENT)
COLUMNS: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in ALL_COLUMNS}
#: Costs that grow with the input: what sweeps fit and plot.
METRICS: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS if c.metric)

#: Where a row was measured and how: the columns that tell two runs apart. Any may be absent from a file.
ENV_COLUMNS = ("device", "device_name", "cuda_version", "dtype", "threads", "torch", "attnzoo_version", "mode",
               "compile", "amp", "channels_last", "input_scale", "sdpa_backend", "runtime")
#: Columns measured (not settings): numbers that compare and report show.
MEASURED = ("params", "trainable_params", "macs", "flops", "fwd_ms", "fwd_iqr_ms", "fwd_runs", "train_ms",
            "train_iqr_ms", "train_runs", "fwd_peak_mib", "train_peak_mib", "efficiency", "device_gflops",
            "max_abs_err", "rel_err", "nonfinite", "grad_max_abs_err", "grad_rel_err", "grad_nonfinite", "export_s")

__all__ = ["ALL_COLUMNS", "BY_NAME", "COLUMNS", "Column", "DEPLOY", "ENV_COLUMNS", "ENVIRONMENT", "IDENTITY", "MEASURED",
           "METRICS", "NETWORK", "NETWORK_DELTAS"]
