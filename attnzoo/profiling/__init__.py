"""Measuring blocks: MACs and FLOPs (flops), latency (timing), peak memory (memory), rows (runner).

Everything here imports torch, except columns.py and measurements.py (the columns of a row, which
``compare`` and ``report`` read); ``import attnzoo`` and ``attnzoo list`` never import torch.
"""
