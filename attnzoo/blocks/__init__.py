"""Attention blocks: plain nn.Modules, one file per paper or family, that know nothing of the registry."""
