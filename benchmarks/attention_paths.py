"""Fused attention (F.scaled_dot_product_attention) against the explicit softmax(Q K^T) V path.

For mha, sdpa and vit-attention, built as ``attnzoo profile`` builds them (a B,C,H,W feature map through
the token adapter), the same module is run with its ``fused`` flag on and off (same weights, same input):
forward latency ratio (interleaved rounds, median of the per-round ratios) and peak-memory ratio
(attnzoo.profiling.memory.peak_bytes, the method of ``profile``). For sdpa it also times the two batched
matrix products the maths cannot avoid (x x^T and P x, contiguous): explicit / matmuls is the largest
speed-up any exact implementation can have over the explicit path at that matmul rate.

attnzoo's mha is also timed against torch.nn.MultiheadAttention with the same weights. Like with like:
attnzoo's mha ends with the residual and LayerNorm of the article, nn.MultiheadAttention does not, so
the reference is nn.MultiheadAttention (its eval fast path) followed by the same residual and LayerNorm,
through the same adapter; nn.MultiheadAttention alone is shown too, for information.

    python benchmarks/attention_paths.py [--shape 128,256,24,24] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import copy

import common  # noqa: F401  (puts the checkout on sys.path)
from common import devices, parser, print_header, print_table, ratio, side_by_side, write_json

BLOCKS = ("mha", "sdpa", "vit-attention")
SHAPE = "128,256,24,24"  # the first article's feature map
TARGET_SPEEDUP = 1.5
TARGET_MEMORY = 3.0
TARGET_VS_TORCH = 1.1


def explicit_copy(module):
    """A deep copy of ``module`` with every ``fused`` flag off: the same weights on the explicit path."""
    twin = copy.deepcopy(module)
    for sub in twin.modules():
        if hasattr(sub, "fused"):
            sub.fused = False
    return twin


def _max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def attention_paths(shape, device: str, rounds: int) -> list[dict]:
    import torch

    import attnzoo
    from attnzoo.blocks.adapters import to_tokens
    from attnzoo.profiling.memory import MIB, peak_bytes

    rows = []
    for name in BLOCKS:
        fused, inputs = attnzoo.create(name, shape, device=device, fused=True)
        fused.eval()
        explicit = explicit_copy(fused).eval()
        with torch.inference_mode():
            diff = _max_diff(fused(*inputs), explicit(*inputs))
            fns = {"fused": lambda: fused(*inputs), "explicit": lambda: explicit(*inputs)}
            if name == "sdpa":
                x = to_tokens(inputs[0]).contiguous()
                xt = x.transpose(1, 2)
                fns["matmuls"] = lambda: torch.bmm(torch.bmm(x, xt), x)
            times = side_by_side(fns, device, rounds=rounds)
            if name == "sdpa":
                x = xt = None
            fused_mib = peak_bytes(lambda: fused(*inputs), device) / MIB
            explicit_mib = peak_bytes(lambda: explicit(*inputs), device) / MIB
        speedup = ratio(times, "explicit", "fused")
        memory = explicit_mib / fused_mib
        rows.append({
            "block": name, "device": device, "shape": ",".join(map(str, shape)),
            "fused_ms": times["fused"]["median_ms"], "explicit_ms": times["explicit"]["median_ms"],
            "speedup": speedup, "fused_mib": fused_mib, "explicit_mib": explicit_mib, "memory_ratio": memory,
            "max_abs_diff": diff,
            "matmul_ms": times["matmuls"]["median_ms"] if "matmuls" in times else None,
            "speedup_bound": ratio(times, "explicit", "matmuls") if "matmuls" in times else None,
            "speed_ok": speedup >= TARGET_SPEEDUP, "memory_ok": memory >= TARGET_MEMORY,
        })
        fused = explicit = inputs = fns = None  # freed before the next block
    return rows


def torch_mha_comparison(shape, device: str, rounds: int) -> dict:
    import torch
    import torch.nn as nn

    import attnzoo
    from attnzoo.blocks.adapters import TokensFromFeatureMap

    class ResidualNorm(nn.Module):
        """nn.MultiheadAttention, then the residual and LayerNorm that attnzoo's mha (the article's) ends with."""

        def __init__(self, attention: nn.MultiheadAttention, norm: nn.LayerNorm | None):
            super().__init__()
            self.attention, self.norm = attention, norm

        def forward(self, x):
            out = self.attention(x, x, x, need_weights=False)[0]
            return out if self.norm is None else self.norm(out + x)

    ours, inputs = attnzoo.create("mha", shape, device=device, fused=True)
    ours.eval()
    block = ours.block
    dim = block.w_qs.in_features
    reference = nn.MultiheadAttention(dim, block.num_heads, dropout=block.dropout.p, bias=False,
                                      batch_first=True, device=device)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([block.w_qs.weight, block.w_ks.weight, block.w_vs.weight]))
        reference.out_proj.weight.copy_(block.fc.weight)
    like = TokensFromFeatureMap(ResidualNorm(reference, copy.deepcopy(block.layer_norm))).eval()
    alone = TokensFromFeatureMap(ResidualNorm(reference, None)).eval()
    with torch.inference_mode():
        diff = _max_diff(ours(*inputs), like(*inputs))
        times = side_by_side({"attnzoo mha": lambda: ours(*inputs),
                              "torch MHA + residual + LayerNorm": lambda: like(*inputs),
                              "torch MHA alone": lambda: alone(*inputs)}, device, rounds=rounds)
    vs_like = ratio(times, "attnzoo mha", "torch MHA + residual + LayerNorm")
    return {
        "device": device, "shape": ",".join(map(str, shape)),
        "attnzoo_ms": times["attnzoo mha"]["median_ms"],
        "torch_mha_ln_ms": times["torch MHA + residual + LayerNorm"]["median_ms"],
        "torch_mha_alone_ms": times["torch MHA alone"]["median_ms"],
        "vs_torch": vs_like, "vs_torch_alone": ratio(times, "attnzoo mha", "torch MHA alone"),
        "max_abs_diff": diff, "ok": vs_like <= TARGET_VS_TORCH,
    }


def main(argv=None) -> dict:
    from attnzoo.build import parse_shape

    p = parser(__doc__.split("\n")[0])
    p.add_argument("--shape", default=SHAPE, help=f"B,C,H,W [default: {SHAPE}]")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds [default: 7]")
    p.add_argument("--device", action="append", help="cpu, cuda (repeatable) [default: cpu, and cuda if present]")
    args = p.parse_args(argv)
    shape = parse_shape(args.shape)
    chosen = args.device or devices()
    info = print_header("attention_paths: fused F.scaled_dot_product_attention vs explicit softmax(QK^T)V",
                        chosen)
    print(f"shape {args.shape} (B,C,H,W through the token adapter, as `attnzoo profile` builds it); "
          f"{args.rounds} interleaved rounds; ratios are medians of per-round ratios; peak memory by "
          "attnzoo.profiling.memory.peak_bytes")
    paths, versus = [], []
    for device in chosen:
        rows = attention_paths(shape, device, args.rounds)
        paths += print_table(rows, ["block", "device", "fused_ms", "explicit_ms", "speedup", "fused_mib",
                                    "explicit_mib", "memory_ratio", "max_abs_diff", "speed_ok", "memory_ok"],
                             title=f"fused vs explicit on {device} (targets: speedup >= {TARGET_SPEEDUP}, "
                                   f"memory_ratio >= {TARGET_MEMORY})")
        for row in rows:
            if row["speedup_bound"] is not None:
                print(f"{row['block']} on {device}: the two matmuls alone (x x^T, then P x, through BLAS) take "
                      f"{row['matmul_ms']:.4g} ms of the explicit path's {row['explicit_ms']:.4g} ms: explicit / "
                      f"matmuls = {row['speedup_bound']:.3g}x is about all that fusing the rest can gain; fused "
                      f"reaches {row['speedup']:.3g}x")
        result = torch_mha_comparison(shape, device, args.rounds)
        versus += print_table([result], ["device", "attnzoo_ms", "torch_mha_ln_ms", "torch_mha_alone_ms",
                                         "vs_torch", "vs_torch_alone", "max_abs_diff", "ok"],
                              title=f"attnzoo mha vs torch.nn.MultiheadAttention on {device}, like with like: "
                                    "torch MHA + the same residual + LayerNorm (vs_torch = attnzoo / torch; "
                                    f"target <= {TARGET_VS_TORCH}); vs_torch_alone: torch MHA without them")
    payload = {"benchmark": "attention_paths", "machine": info, "shape": args.shape, "rounds": args.rounds,
               "paths": paths, "vs_torch": versus}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
