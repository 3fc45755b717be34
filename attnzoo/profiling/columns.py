"""The columns of a row: name, unit and how each is shown. One list read by the runner, the table, CSV and
JSON, the sweep's fits and the plots, so a new measurement is added in one place.

This module imports nothing heavy: ``compare`` and ``report`` read it without importing torch.
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
