"""Class attention (CaiT): only the class token queries the patches."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention
from attnzoo.blocks.self_attention import _check_heads


class ClassAttention(nn.Module):
    """CaiT's class-attention layer: the class token attends to itself and to every patch.

    Touvron, Cord, Sablayrolles, Synnaeve, Jegou, "Going deeper with Image Transformers", ICCV 2021,
    https://arxiv.org/abs/2103.17239 (sec. 3). With z = [x_class; x_patches]: q = W_q x_class,
    k = W_k z, v = W_v z, A = softmax(q k^T / sqrt(d)), out = W_o (A v) (with bias). q, k and v have a bias by
    default: the bare ``Class_Attention`` of the official code (facebookresearch/deit ``cait_models.py``) and
    timm's ``ClassAttn`` default to ``qkv_bias=False``, but every CaiT model of both passes ``qkv_bias=True``,
    so attnzoo follows the models (``qkv_bias=False`` gives the bare class). Only the class token is updated,
    so the output is one token: (B, 1, C).

    Input. With ``class_token=True`` (default) the block holds its own learned class token (trunc-normal
    init, std 0.02, as CaiT's) and takes the patches alone: (B, N, C) -> (B, 1, C), the class embedding a
    user would read out of a feature map (the card's feature-map form returns these (B, 1, C) tokens, not a
    map). With ``class_token=False`` it is the reference layer: the input is (B, 1 + N, C) with the class
    token first. The residual, LayerScale and MLP of the CA block are not included.
    Cost: 2 N' C^2 (k, v) + 2 C^2 (q, output) + 2 N' C MACs per image, N' = 1 + N tokens with the held class
    token (N' = N, the input's length, with ``class_token=False``): linear in N.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, class_token: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.fused = fused
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02, a=-2.0, b=2.0)
        else:
            self.register_parameter("cls_token", None)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, C)
        b, n, c = x.shape
        q = self.q(x[:, :1]).view(b, 1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, 1, hd)
        k = self.k(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, 1+N, hd)
        v = self.v(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, 1+N, hd)
        drop = self.attn_drop if self.training else 0.0
        out, weights = dot_product_attention(q, k, v, dropout_p=drop, fused=self.fused,
                                             need_weights=return_attention)  # (B, heads, 1, hd)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, 1, c)))  # (B, 1, C)
        return (out, weights) if return_attention else out
