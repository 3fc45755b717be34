"""Campaigns: what every command measures is a list of units, run by an executor, whose rows come back to
one writer. Never imports torch (the driver plans, shards, merges and resumes without it).

The pieces:

* :mod:`~attnzoo.campaign.units` — :class:`Unit`: a kind ("profile", "train", ...), a block, a shape, the
  settings, the constructor overrides and, for a block inside a network, ``network`` / ``placement`` /
  ``stages`` (None for a block alone). ``unit.id`` is a hash of all that and the attnzoo version: stable on
  every machine, so it shards, resumes and merges.
* :mod:`~attnzoo.campaign.executors` — the executor interface: ``executor.run(units, before=, progress=)``
  yields one row per unit as each finishes, stamped with ``unit_id``, ``host``, ``node``, ``device_index``.
  :class:`Local` runs here; ``attnzoo.campaign.ray_executor.RayExecutor`` runs Ray tasks.
* :mod:`~attnzoo.campaign.shard` — ``--shard I/N`` (or from a job array's environment): a selection of units.
* :mod:`~attnzoo.campaign.driver` — :class:`Campaign`: the shard's units, minus those a resumed ``--output``
  holds, through an executor, each row written as it arrives; returns the rows in the plan's order.
* :mod:`~attnzoo.campaign.rows` — the file written row by row, and the plan beside it (FILE.campaign.json).

Adding a kind of unit (how ``train --compare`` plugs in): the train package provides a function
``run_unit(unit, context) -> dict`` (one result row; ``context`` is a :class:`RunContext`: ``raise_errors``,
``threads``) and registers it, without the campaign importing train::

    from attnzoo.campaign.units import Unit, register_runner
    register_runner("train", "attnzoo.train.compare:run_unit")   # "module:function", imported where it runs
    units = [Unit.make("train", block, shape, settings={"epochs": 5, "seed": seed, ...}) for ...]
    rows = Campaign("train", units, row_file=..., resume=...).run(make_executor(ray_address))

The row must have ``block``, ``shape`` and ``status`` ("ok", or why not); the executor adds where it ran.
A network row (attnzoo.networks) is a profile unit with ``network`` / ``placement`` / ``stages`` set: the
profile runner passes them on to prepare, and nothing here changes.
"""

from attnzoo.campaign.driver import Campaign
from attnzoo.campaign.executors import Local, RunContext, make_executor
from attnzoo.campaign.shard import Shard, parse_shard
from attnzoo.campaign.units import Unit, register_runner

__all__ = ["Campaign", "Local", "RunContext", "Shard", "Unit", "make_executor", "parse_shard", "register_runner"]
