"""Options shared by the commands, and the one place that turns expected errors into a message."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from attnzoo.output import FORMATS

RegistryOption = typer.Option(
    None, "--registry", "-r", metavar="DIR",
    help="Extra folder of block cards (repeatable); also read from $ATTNZOO_REGISTRY.")
FormatOption = typer.Option("table", "--format", "-f", help="Output format: table, csv or json.")
OutputOption = typer.Option(None, "--output", "--out", "-o", metavar="FILE",
                            help="Write the data to FILE instead of stdout (--out is the same option).")
#: train's --output: its --out is the run folder.
SummaryOutputOption = typer.Option(None, "--output", "-o", metavar="FILE",
                                   help="Write the summary to FILE instead of stdout (--out is the run folder).")
# The table of rows (profile, sweep): which columns it shows. CSV and JSON always hold every column.
WideOption = typer.Option(False, "--wide", help="Show every column in the table (default: the columns that fit).")
ColumnsOption = typer.Option(None, "--columns", metavar="A,B,C",
                             help="Show these columns in the table (names of the CSV header, or table headings).")
# Measurement options shared by profile and sweep: None means "the suite's value, else the default".
SetOption = typer.Option(None, "--set", metavar="KEY=VALUE",
                         help="Override a constructor argument (repeatable): KEY=VALUE for every named block that "
                              "takes it, BLOCK.KEY=VALUE for one block.")
DeviceOption = typer.Option(None, "--device", help="cpu, cuda (or cuda:N) or auto (default: auto).")
DtypeOption = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: float32).")
ThreadsOption = typer.Option(None, "--threads",
                             help="CPU threads while measuring (torch.set_num_threads) (default: torch's).")


def bounded(low: float, *, strict: bool = False, what: str = "a number"):
    """A typer callback that refuses NaN, infinities and values below ``low`` (``strict``: at or below it),
    in one line naming the option as the user typed it (``--min-time``, not ``min_time``)."""
    import math

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Optional[float]) -> Optional[float]:
        if value is None:
            return value
        if not math.isfinite(value) or value < low or (strict and value == low):
            bound = f"above {low:g}" if strict else f"at least {low:g}"
            raise typer.BadParameter(f"must be {what}, finite and {bound}, got {value:g}", ctx=ctx, param=param)
        return value

    return check


OverwriteOption = typer.Option(
    False, "--overwrite",
    help="Replace an existing --output file (and its .settings.json and .campaign.json beside it); without it "
         "(or --resume) an existing file is refused.")


def check_fresh(path, overwrite: bool, option: str = "--output", resume_too: bool = False) -> None:
    """Refuse (one line) to write over an existing file unless ``overwrite``: a command never destroys a
    result it did not make in this run without being told."""
    from pathlib import Path

    from attnzoo.errors import ConfigError

    if path is None or overwrite:
        return
    target = Path(path)
    if target.is_file() and target.stat().st_size > 0:
        how = "pass --resume to complete it, or --overwrite to replace it" if resume_too else "pass --overwrite to replace it"
        raise ConfigError(f"{option} {path} exists: {how}")


def registry_dirs(value: Optional[List[str]]) -> list[str]:
    return list(value or [])


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def count(number: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``0 rows``."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def say(text: str) -> None:
    """One line for the user on stderr, never wrapped (data goes to stdout)."""
    print(" ".join(str(text).split()), file=sys.stderr, flush=True)


def parse_overrides(values: Optional[List[str]]) -> dict:
    """``--set key=value`` options to constructor keywords."""
    from attnzoo.build import parse_override

    return dict(parse_override(v) for v in values or [])


def check_runs(runs, items: Optional[List[str]], dirs) -> list[dict[str, dict]]:
    """Blocks, shapes and ``--set`` checked before torch is imported, for runs of ``(patterns, shapes,
    overrides)``: unknown names, malformed shapes, a shape a block named explicitly (or every block) cannot
    take, and ``--set`` items (``KEY=VALUE`` for every block that takes it, ``BLOCK.KEY=VALUE`` for one) whose
    key no block takes or whose value its argument does not accept. Returns, per run, each block's overrides
    (the run's own, then ``--set``'s)."""
    from attnzoo.build import check_layout, parse_shape
    from attnzoo.errors import ConfigError
    from attnzoo.overrides import assign
    from attnzoo.registry import get_spec, resolve_names

    specs, dims, resolved = {}, [], []
    for patterns, shapes, _ in runs:
        names = resolve_names(patterns, dirs)
        run_dims = [parse_shape(s) for s in shapes or []]
        explicit = {p for p in patterns if not any(ch in p for ch in "*?[")}
        for shape in run_dims:
            cards = [get_spec(name, dirs) for name in names]
            refused = []
            for card in cards:
                try:
                    check_layout(card, shape)
                except Exception as exc:  # noqa: BLE001  (a ShapeError)
                    refused.append((card, exc))
            for card, exc in refused:
                if card.name in explicit or len(refused) == len(cards):
                    raise exc
        specs.update({name: get_spec(name, dirs) for name in names})
        dims += run_dims
        resolved.append(names)
    if items and not specs:
        raise ConfigError("--set sets a block's constructor argument: name a block")
    assigned = assign(list(items or []), specs, dims)
    return [{name: {**(run[2] or {}), **assigned[name]} for name in names} for run, names in zip(runs, resolved)]


def split_plans(patterns: List[str], per_block: dict[str, dict]) -> list[tuple[list[str], dict]]:
    """``(patterns, overrides)`` of a run: the patterns whole when every block gets the same overrides, else
    one block a plan."""
    values = list(per_block.values())
    if all(v == values[0] for v in values):
        return [(list(patterns), values[0] if values else {})]
    return [([name], overrides) for name, overrides in per_block.items()]


#: Set by :func:`attnzoo.cli.run` while a command given ``--debug`` runs (its argv, not ``sys.argv``).
_debug_flag = False


def set_debug(enabled: bool) -> bool:
    """Turn the ``--debug`` flag on or off; returns the previous value."""
    global _debug_flag
    previous, _debug_flag = _debug_flag, bool(enabled)
    return previous


def debug_enabled() -> bool:
    """Whether to show tracebacks: ``--debug`` given to the running command, or ATTNZOO_DEBUG set."""
    return _debug_flag or os.environ.get("ATTNZOO_DEBUG", "") not in ("", "0")


# The measurement modes, shared by profile and sweep (and, without --compile-mode, by train).
CompileOption = typer.Option(False, "--compile", help="torch.compile the block (train: the network); its compile time is compile_s.")
CompileModeOption = typer.Option(
    None, "--compile-mode", metavar="MODE",
    help="torch.compile mode: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs.")
AmpOption = typer.Option(False, "--amp",
                         help="Autocast: bfloat16 on CPU, float16 on CUDA (the weights stay float32).")
ChannelsLastOption = typer.Option(False, "--channels-last", help="Block and feature maps in channels-last format.")
RecalibrateOption = typer.Option(
    False, "--recalibrate",
    help="Measure the device's ceilings (the roofline's) afresh and replace those kept in the cache "
         "(attnzoo calibrate --show lists them).")


InputScaleOption = typer.Option(
    None, "--input-scale", metavar="S",
    help="Inputs with standard deviation S instead of 1 (the larger activations deep residual streams reach: "
         "where half precision overflows).")
SdpaBackendOption = typer.Option(
    None, "--sdpa-backend", metavar="NAME",
    help="scaled_dot_product_attention's kernel: auto (torch's choice), math, flash, efficient or cudnn; a "
         "kernel the device or inputs cannot take is the row's status. The sdpa_kernel column says which ran.")


RuntimeOption = typer.Option(
    None, "--runtime", metavar="NAME",
    help="What runs the forward: eager (PyTorch, the default), torch.export (the exported program), onnxruntime "
         "or openvino (the block exported to ONNX, run on the CPU). The block is exported first (export_s), its "
         "output checked against eager float32 (a row that differs by more than 1e-4 relative fails), then timed "
         "like eager; export, exporter, opset, onnx_ops and dynamic_hw say how the export went. Needs the deploy "
         "extra; implies --mode infer.")
ExportDirOption = typer.Option(
    None, "--export-dir", metavar="DIR",
    help="With --runtime: keep the exported files in DIR (BLOCK-SHAPE.onnx; NETWORK-BLOCK-SHAPE.onnx for a "
         "network; .pt2 for torch.export).")


def runtime_settings(runtime: Optional[str], export_dir: Optional[str]) -> dict:
    """``--runtime`` and ``--export-dir`` checked before torch is imported (an unknown runtime, its packages
    not installed, a torch too old: one line); a runtime other than eager measures inference, so the mode is
    infer unless given."""
    from attnzoo.errors import ConfigError
    from attnzoo.modes import check_runtime

    if runtime is None:
        if export_dir is not None:
            raise ConfigError("--export-dir keeps the files a --runtime exports: give --runtime torch.export, "
                              "onnxruntime or openvino")
        return {}
    check_runtime(runtime)
    found: dict = {"runtime": runtime}
    if export_dir is not None:
        if runtime == "eager":
            raise ConfigError("--export-dir keeps the files a --runtime exports; eager exports nothing")
        folder = os.path.abspath(os.path.expanduser(export_dir))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ConfigError(f"--export-dir {export_dir}: a file is there, not a folder")
        found["export_dir"] = folder
    return found


def mode_settings(compile_: bool, compile_mode: Optional[str], amp: bool, channels_last: bool,
                  input_scale: Optional[float] = None, sdpa_backend: Optional[str] = None) -> dict:
    """The modes given on the command line (flags left off are not given, so a suite's value stands),
    checked before anything heavy is imported."""
    import math

    from attnzoo.errors import ConfigError
    from attnzoo.modes import SDPA_BACKENDS

    if input_scale is not None and not (math.isfinite(input_scale) and input_scale > 0):
        raise ConfigError(f"--input-scale {input_scale}: the inputs' standard deviation must be a positive finite "
                          "number (1: unit variance)")
    if sdpa_backend is not None and sdpa_backend not in SDPA_BACKENDS:
        from attnzoo.registry import closest

        close = closest(sdpa_backend, list(SDPA_BACKENDS), n=1)
        raise ConfigError(f"--sdpa-backend {sdpa_backend}: not one of {', '.join(SDPA_BACKENDS)}"
                          + (f"; did you mean '{close[0]}'?" if close else ""))
    given = {"compile": compile_ or None, "compile_mode": compile_mode, "amp": amp or None,
             "channels_last": channels_last or None, "input_scale": input_scale, "sdpa_backend": sdpa_backend}
    return {key: value for key, value in given.items() if value is not None}



# Campaigns (attnzoo.campaign): shared by profile and sweep.
ShardOption = typer.Option(
    None, "--shard", metavar="I/N",
    help="Run only shard I of N (1-based) of the units, e.g. in a job array; 'auto' reads SLURM_ARRAY_TASK_ID "
         "and SLURM_ARRAY_TASK_COUNT ('auto/N' with JOB_COMPLETION_INDEX). Join the parts with 'attnzoo merge'.")
RayOption = typer.Option(
    None, "--ray", metavar="[ADDRESS]",
    help="Run the units as Ray tasks: on the cluster at ADDRESS (host:port, ray://host:port or auto), or, "
         "with no address, on a Ray started here. Needs Ray (the ray extra of attnzoo).")
RetryFailedOption = typer.Option(
    False, "--retry-failed", help="With --resume: measure again the units whose rows failed or were skipped.")

def ray_argument(args: List[str]) -> List[str]:
    """Give a bare ``--ray`` its default address: the next word is an address only if it looks like one
    (host:port, ray://..., auto, local), so ``--ray cbam --shape ...`` keeps cbam a block name."""
    from attnzoo.campaign.executors import LOCAL_RAY

    fixed: List[str] = []
    for i, arg in enumerate(args):
        fixed.append(arg)
        if arg == "--ray":
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or not (":" in following or following in ("auto", LOCAL_RAY)):
                fixed.append(LOCAL_RAY)
    return fixed


# Blocks inside networks, shared by profile and sweep (attnzoo.networks).
NetworkOption = typer.Option(
    None, "--network", metavar="NET",
    help="Place the blocks in this network (repeatable, wildcards): the shape is its input, B,3,H,W; "
         "each network also gets its plain row (block none). See 'attnzoo list --networks'; timm:NAME is timm's "
         "model NAME (seresnet33ts.ra2_in1k), built without weights (pip install 'attnzoo[timm]').")
PlacementOption = typer.Option(
    None, "--placement", metavar="NAME",
    help="With --network: residual, stage, replace-conv, mobilenet-v2 or token-mixer (default: each block's first "
         "that the network offers).")
StagesOption = typer.Option(None, "--stages", metavar="3,4", help="With --network: only these stages hold blocks.")


def network_options(network: Optional[List[str]], placement: Optional[str], stages: Optional[str]) -> dict:
    """The network keywords of profile_rows given on the command line (empty when there is no --network)."""
    from attnzoo.errors import ConfigError

    if not network:
        if placement is not None or stages is not None:
            raise ConfigError("--placement and --stages need --network")
        return {}
    return {"networks": list(network), "placement": placement, "stages": stages}


def reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line: the terminal wraps it, never a docstring's line breaks.
    Paragraphs (separated by a blank line) stay apart; a paragraph whose lines are indented (an example)
    keeps its lines."""
    if text is None:
        return None
    import inspect

    paragraphs = []
    for block in inspect.cleandoc(text).split("\n\n"):
        lines = block.split("\n")
        if len(lines) > 1 and all(line.startswith((" ", "\t")) for line in lines[1:] if line.strip()):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(" ".join(lines).split()))
    return "\n\n".join(p for p in paragraphs if p)


def tidy_help(application) -> None:
    """Reflow the help of every command of ``application`` (its docstring when it has no ``help=``) and of
    the application itself."""
    import inspect

    for command in application.registered_commands:
        command.help = reflow(command.help if command.help is not None else inspect.getdoc(command.callback))
        name_metavars(command.callback)
    plain_help_types()
    if isinstance(application.info.help, str):  # else typer's placeholder for "no help given"
        application.info.help = reflow(application.info.help)


def name_metavars(callback) -> None:
    """Give every option and argument of ``callback`` without a metavar one a person reads: none for a flag,
    N for an integer, NUMBER for a float, else the option's name in capitals (typer would show <bool>, <str>,
    <list[str]>)."""
    import inspect

    from typer.models import ArgumentInfo, OptionInfo

    for name, parameter in inspect.signature(callback).parameters.items():
        info = parameter.default
        if not isinstance(info, (OptionInfo, ArgumentInfo)) or info.metavar is not None:
            continue
        annotation = str(parameter.annotation)
        if "bool" in annotation:
            info.metavar = ""
        elif "int" in annotation and "Path" not in annotation:
            info.metavar = "N"
        elif "float" in annotation:
            info.metavar = "NUMBER"
        else:
            flags = [d for d in (getattr(info, "param_decls", None) or ()) if d.startswith("--")]
            info.metavar = (flags[0][2:] if flags else name).upper().replace("-", "_")


def plain_help_types() -> None:
    """Recent typer shows a type beside every option and argument (<bool>, <str>): a flag takes no value and
    an argument is already shown by its name, so show none for those (a metavar of an option still shows)."""
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is None or argument is None or not hasattr(option, "display_type_rich"):
        return  # an older typer: its help shows no such types
    if getattr(option.display_type_rich, "plain", False):
        return
    shown = option.display_type_rich

    def option_type(self, ctx):
        return None if getattr(self, "is_flag", False) and not self.metavar else shown(self, ctx)

    def argument_type(self, ctx):
        return None

    option_type.plain = argument_type.plain = True
    option.display_type_rich = option_type
    argument.display_type_rich = argument_type
