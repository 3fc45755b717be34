"""Measuring blocks: MACs and FLOPs (flops), latency (timing), peak memory (memory), rows (runner).

Everything here imports torch; ``import attnzoo`` and ``attnzoo list`` never import this package.
"""
