"""Blocks inside networks: network cards (read without torch), placements found by structure, and networks
built with blocks in place. Blocks know nothing of this package; it imports the registry and build, never the
CLI. Importing it does not import torch (only :mod:`attnzoo.networks.build` and ``placements`` do)."""

from attnzoo.networks.cards import (PLACEMENTS, NetworkSpec, block_placements, choose_placement, get_network,
                                    list_networks, resolve_networks)

__all__ = ["PLACEMENTS", "NetworkSpec", "block_placements", "choose_placement", "get_network", "list_networks",
           "resolve_networks"]
