"""Routing attention (Routing Transformer): k-means routing of queries and keys, attention within clusters."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.self_attention import _check_heads
from attnzoo.blocks.sparse import _as_int


class RoutingAttention(nn.Module):
    """Content-based sparse attention: each query attends only to the keys routed to its k-means cluster.

    Roy, Saffar, Vaswani, Grangier, "Efficient Content-Based Sparse Attention with Routing Transformers",
    TACL 2021, https://arxiv.org/abs/2003.05997 (sec. 4). Per head, K centroids (``num_clusters``; the card
    takes K = floor(sqrt(N)), the paper's choice for O(N^1.5)) live on the unit sphere as a buffer. Queries
    and keys are l2-normalised for routing only (spherical k-means); attention uses the raw projections with
    scale 1/sqrt(head_dim), as usual.

    - Query i goes to its nearest centroid mu(q_i) (the paper's definition).
    - Each centroid takes its w = ceil(N / K) nearest keys (the paper's balanced top-k implementation; a key
      may serve several clusters or none), so each query attends to exactly w keys.
      The paper (and lucidrains/routing-transformer) also pick the top-w queries per centroid, which leaves
      some queries with no output; attnzoo routes every query to its nearest centroid instead, so every
      pixel gets an output at the same cost.
    - In training mode the centroids move by an exponential moving average (``decay`` 0.999) towards the
      mean of the normalised queries and keys assigned to them, then are re-normalised; never in eval mode,
      where the block is deterministic. Routing itself (argmax, top-k) passes no gradient, as in the paper;
      every parameter gets gradients through q, k and v.
    - The auxiliary commitment loss of the community port (lucidrains/routing-transformer, ``Kmeans``:
      ``F.mse_loss(x, routed_means) * commitment`` over the normalised queries and keys, weight 1e-4) is
      exposed as the attribute ``aux_loss`` after a training forward (``None`` in eval): the mean over every
      element (B, heads, 2N and head_dim) of the squared difference between each normalised q and k and its
      nearest centroid, times ``commitment``. Add it to the task loss if wanted; attnzoo never adds it itself.

    Cost: 4 N C^2 + 2 N K C (routing) + 2 N w C (attention) MACs per image: N^1.5 with K = w = sqrt(N).
    Memory: the gathered keys and values take O(N w C).
    """

    def __init__(self, dim: int, num_heads: int = 8, num_clusters: int = 8, decay: float = 0.999,
                 commitment: float = 1e-4, qkv_bias: bool = False):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        num_clusters = _as_int("num_clusters", num_clusters)
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be at least 1, got {num_clusters}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.num_heads = num_heads
        self.num_clusters = num_clusters
        self.decay = decay
        self.commitment = commitment
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("centroids", F.normalize(torch.randn(num_heads, num_clusters, self.head_dim), dim=-1))
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        h, d, kc = self.num_heads, self.head_dim, self.num_clusters
        window = -(-n // kc)  # w = ceil(N / K) keys per cluster
        qkv = self.qkv(x).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        centroids = self.centroids.to(q.dtype)  # (heads, K, head_dim)
        sim_q = torch.einsum("bhnd,hkd->bhnk", qn, centroids)  # (B, heads, N, K)
        sim_k = torch.einsum("bhnd,hkd->bhkn", kn, centroids)  # (B, heads, K, N)
        cluster_q = sim_q.argmax(dim=-1)  # (B, heads, N): mu(q_i)
        top_k = sim_k.topk(window, dim=-1).indices  # (B, heads, K, w): the keys of each cluster
        keys_of_query = top_k.gather(2, cluster_q[..., None].expand(b, h, n, window))  # (B, heads, N, w)
        flat = keys_of_query.reshape(b, h, n * window, 1).expand(-1, -1, -1, d)
        k_sel = k.gather(2, flat).view(b, h, n, window, d)  # (B, heads, N, w, head_dim)
        v_sel = v.gather(2, flat).view(b, h, n, window, d)  # (B, heads, N, w, head_dim)
        scores = torch.einsum("bhnd,bhnwd->bhnw", q * self.scale, k_sel)  # (B, heads, N, w)
        weights = scores.softmax(dim=-1)
        out = torch.einsum("bhnw,bhnwd->bhnd", weights, v_sel)  # (B, heads, N, head_dim)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))  # (B, N, C)

        self.aux_loss = None
        if self.training:
            cluster_k = sim_k.argmax(dim=2)  # (B, heads, N): nearest centroid of each key
            points = torch.cat([qn, kn], dim=2)  # (B, heads, 2N, head_dim)
            assigned = torch.cat([cluster_q, cluster_k], dim=2)  # (B, heads, 2N)
            nearest = centroids[torch.arange(h, device=x.device)[:, None], assigned]  # (B, heads, 2N, head_dim)
            self.aux_loss = self.commitment * (points - nearest).pow(2).mean()  # F.mse_loss, as the port
            self._update_centroids(points.detach(), assigned)
        if return_attention:  # scattered into a dense (N, N) map for inspection
            dense = weights.new_zeros(b, h, n, n).scatter_(-1, keys_of_query, weights)
            return out, dense  # (B, heads, N, N), zero outside each query's cluster
        return out

    @torch.no_grad()
    def _update_centroids(self, points: torch.Tensor, assigned: torch.Tensor) -> None:
        h, kc, d = self.centroids.shape
        points = points.transpose(0, 1).reshape(h, -1, d).float()  # (heads, B*2N, head_dim)
        assigned = assigned.transpose(0, 1).reshape(h, -1)  # (heads, B*2N)
        sums = points.new_zeros(h, kc, d).scatter_add_(1, assigned[..., None].expand(-1, -1, d), points)
        counts = torch.zeros(h, kc, device=points.device).scatter_add_(
            1, assigned, torch.ones_like(assigned, dtype=torch.float32))  # (heads, K)
        means = sums / counts.clamp(min=1.0)[..., None]
        moved = F.normalize(self.decay * self.centroids.float() + (1.0 - self.decay) * means, dim=-1)
        self.centroids.copy_(torch.where(counts[..., None] > 0, moved, self.centroids.float()))
