"""External attention (EANet) and its multi-head form (EAMLP): attention to two small learned memories."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ExternalAttention(nn.Module):
    """External attention, the official EANet block for feature maps.

    Guo et al., "Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks",
    TPAMI 2022, https://arxiv.org/abs/2105.02358; follows MenghaoGuo/EANet ``model_torch.py``.
    1x1 conv, memory M_k (C -> S, no bias), softmax over the N pixels, l1 normalisation over the S memory
    slots (double normalisation), memory M_v (S -> C, no bias), 1x1 conv with BatchNorm, identity, ReLU.
    S = 64 as the paper.

    Tied memories. The paper has two memories M_k and M_v, and so does attnzoo by default
    (``tie_memories=False``: two parameters that train independently). The official code instead assigns
    ``linear_1.weight.data = linear_0.weight.data.permute(1, 0, 2)``, so M_v is a view of M_k's storage and
    the two stay transposes of each other through training. ``tie_memories=True`` reproduces that with one
    parameter: M_v is M_k transposed at every forward (C S fewer parameters). Its gradient is the sum of the
    two uses, so an SGD step equals the official code's (two parameters sharing one storage, each stepped
    in turn); with a stateful optimiser such as Adam the official code keeps two sets of moments for the one
    storage, which a single parameter cannot reproduce.

    Initialisation as the official code's final state, in both modes: the 1x1 convolutions draw
    N(0, 2 / fan_out); the official init loop draws M_k and then M_v into the shared storage, so the memory
    the official block starts with is M_v's draw, N(0, 2 / C), with M_k = M_v^T. attnzoo draws that memory
    once and starts M_v (when untied) as its transpose.
    Cost: 2 N C^2 + 2 N S C MACs per image: linear in N.
    """

    def __init__(self, channels: int, memory_size: int = 64, tie_memories: bool = False):
        super().__init__()
        if channels < 1 or memory_size < 1:
            raise ValueError("channels and memory_size must be positive")
        self.tie_memories = tie_memories
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.memory_key = nn.Conv1d(channels, memory_size, 1, bias=False)  # M_k
        # M_v; with tied memories it is M_k's weight transposed, computed at each forward
        self.memory_value = None if tie_memories else nn.Conv1d(memory_size, channels, 1, bias=False)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        for conv in (self.conv1, self.conv2[0]):
            fan_out = math.prod(conv.kernel_size) * conv.out_channels
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
        with torch.no_grad():
            # the official M_v draw (fan_out = C) into the storage M_k shares
            self.memory_key.weight.normal_(0.0, math.sqrt(2.0 / channels))
            if self.memory_value is not None:
                self.memory_value.weight.copy_(self.memory_key.weight.permute(1, 0, 2))

    def value_weight(self) -> torch.Tensor:
        """M_v as a (C, S, 1) convolution weight: its own parameter, or M_k transposed when tied."""
        if self.memory_value is None:
            return self.memory_key.weight.permute(1, 0, 2)
        return self.memory_value.weight

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        identity = x
        b, c, h, w = x.shape
        x = self.conv1(x).view(b, c, h * w)  # (B, C, N)
        attn = self.memory_key(x).softmax(dim=-1)  # (B, S, N), over the pixels
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))  # l1 over the memory slots
        x = F.conv1d(attn, self.value_weight()).view(b, c, h, w)  # (B, C, H, W): M_v
        out = torch.relu(self.conv2(x) + identity)
        return (out, attn) if return_attention else out


class MultiHeadExternalAttention(nn.Module):
    """Multi-head external attention of EAMLP, for tokens (B, N, C).

    Guo et al., TPAMI 2022, https://arxiv.org/abs/2105.02358; follows MenghaoGuo/EANet
    ``multi_head_attention_torch.py``: a linear layer widens C to coef*C, split into coef*num_heads heads;
    per head a memory M_k (Linear to 256/coef slots, with bias), softmax over the tokens, l1 normalisation
    over the slots, M_v back, then the output projection. coef = 4, so 32 heads of 64 slots by default.
    Cost: 2 coef N C^2 + 2 coef N C S MACs per image (S = 256/coef): linear in N.
    """

    def __init__(self, dim: int, num_heads: int = 8, coef: int = 4, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by num_heads ({num_heads})")
        if coef < 1 or 256 % coef:
            raise ValueError(f"coef ({coef}) must divide 256")
        self.num_heads = num_heads * coef
        head_dim = dim * coef // self.num_heads
        self.trans_dims = nn.Linear(dim, dim * coef)
        self.memory_key = nn.Linear(head_dim, 256 // coef)  # M_k
        self.memory_value = nn.Linear(256 // coef, head_dim)  # M_v
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim * coef, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, _ = x.shape
        x = self.trans_dims(x).view(b, n, self.num_heads, -1).permute(0, 2, 1, 3)  # (B, heads, N, d)
        attn = self.memory_key(x).softmax(dim=-2)  # (B, heads, N, S), over the tokens
        attn = self.attn_drop(attn / (1e-9 + attn.sum(dim=-1, keepdim=True)))  # l1 over the slots
        out = self.memory_value(attn).permute(0, 2, 1, 3).reshape(b, n, -1)  # (B, N, coef*C)
        out = self.proj_drop(self.proj(out))
        return (out, attn) if return_attention else out
