"""Splitting a fetch across machines by video, the same way on every machine; shards from a SLURM array.

A SLURM array job (``sbatch --array=0-15``) gives each task ``SLURM_ARRAY_TASK_ID`` and the array's
``SLURM_ARRAY_TASK_COUNT``, ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_MAX`` and ``SLURM_ARRAY_TASK_STEP``.
:func:`choose_shard` turns them into a shard when the command line names none, so one ``sbatch`` script
serves every task. Supported: a range with or without a step (``0-15``, ``1-16``, ``0-30:2``) and any
``%`` throttle (it limits how many tasks run at once, not which exist). A list of indices that is no
regular range (``0,3,7``) cannot be numbered 0..N-1 and is refused, unless ``--num-shards N`` is given:
then the task id itself is the shard index, which is how a few failed shards are run again
(``sbatch --array=3,7`` with ``--num-shards 16``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..sources.clips import Clip
from .options import FetchError

SLURM_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
                   "SLURM_ARRAY_TASK_STEP")


def shard_index_of(ytid: str, num_shards: int) -> int:
    """The shard of a video among ``num_shards``: a stable hash, the same on every machine."""
    return int(hashlib.sha1(ytid.encode("ascii")).hexdigest()[-8:], 16) % num_shards


def select_shard(clips: Iterable[Clip], num_shards: int, shard_index: int) -> Iterator[Clip]:
    for clip in clips:
        if num_shards == 1 or shard_index_of(clip.ytid, num_shards) == shard_index:
            yield clip


class SlurmArrayError(FetchError):
    """The SLURM array variables do not name one shard of a contiguous array (a usage error)."""


@dataclass(frozen=True)
class ShardChoice:
    """Which shard this run fetches, and where that came from (for the run's first line)."""

    index: int = 0
    count: int = 1
    #: ``""`` (not sharded), ``"options"`` or ``"slurm"``.
    source: str = ""
    #: The SLURM variables that chose it, as ``NAME=value`` (empty unless ``source == "slurm"``).
    variables: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the shard and what chose it; ``""`` when the run is not sharded."""
        if self.count == 1 and self.source != "slurm":
            return ""
        where = ("from the SLURM array job (" + ", ".join(self.variables) + ")" if self.source == "slurm"
                 else "from --shard-index/--num-shards")
        return f"shard {self.index} of {self.count}, {where}"


def choose_shard(shard_index: int | None, num_shards: int | None,
                 environ: Mapping[str, str] | None = None) -> ShardChoice:
    """The shard to fetch: explicit options win, else a SLURM array task's, else the whole (``0`` of ``1``).

    * both options given: exactly those, whatever the environment says;
    * only ``num_shards``: in an array task the task id is the shard index (re-running chosen shards);
      outside one, shard 0;
    * neither, in an array task: ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP``
      of ``SLURM_ARRAY_TASK_COUNT``, checked against ``SLURM_ARRAY_TASK_MAX`` when set;
    * only ``shard_index``: that index of one shard (as before SLURM support: an error unless 0).

    Raises :class:`SlurmArrayError` naming the variables when they are not whole numbers or do not
    describe a task of a contiguous array.
    """
    env = os.environ if environ is None else environ
    if shard_index is not None or "SLURM_ARRAY_TASK_ID" not in env:
        if shard_index is None and num_shards is None:
            return ShardChoice()
        return ShardChoice(shard_index or 0, num_shards or 1, "options")
    values = _slurm_values(env)
    task = values["SLURM_ARRAY_TASK_ID"]
    shown = tuple(f"{name}={env[name]}" for name in ("SLURM_ARRAY_JOB_ID", *SLURM_VARIABLES) if name in env)
    if num_shards is not None:
        if task >= num_shards:
            raise SlurmArrayError(
                f"SLURM_ARRAY_TASK_ID={task} is no shard index of --num-shards {num_shards} (with --num-shards "
                f"the task id is the shard index: submit --array with ids 0-{num_shards - 1})")
        return ShardChoice(task, num_shards, "slurm", shown)
    for name in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        if name not in values:
            raise SlurmArrayError(
                f"SLURM_ARRAY_TASK_ID is set but {name} is not, so the number of shards is unknown: pass "
                "--num-shards N (the task id is then the shard index)")
    count, low = values["SLURM_ARRAY_TASK_COUNT"], values["SLURM_ARRAY_TASK_MIN"]
    step = values.get("SLURM_ARRAY_TASK_STEP", 1)
    high = values.get("SLURM_ARRAY_TASK_MAX", low + (count - 1) * step)
    offset = task - low
    problem = None
    if count < 1 or step < 1:
        problem = "the array has no tasks or no step"
    elif high != low + (count - 1) * step:
        problem = (f"{count} tasks from {low} to {high} are not a range with step {step} (an array given as a "
                   "list of ids)")
    elif offset < 0 or offset % step or offset // step >= count:
        problem = f"task {task} is not one of the array's ids {low}, {low + step}, ..., {high}"
    if problem is not None:
        raise SlurmArrayError(
            f"the SLURM array variables ({', '.join(shown)}) do not name one shard: {problem}. Submit a range "
            "(sbatch --array=0-N), or pass --num-shards N so that the task id is the shard index, or pass "
            "--shard-index and --num-shards")
    return ShardChoice(offset // step, count, "slurm", shown)


def _slurm_values(env: Mapping[str, str]) -> dict[str, int]:
    values = {}
    for name in SLURM_VARIABLES:
        if name in env:
            text = env[name].strip()
            if not re.fullmatch(r"[0-9]+", text):
                raise SlurmArrayError(f"{name}={env[name]!r} is not a whole number (set by SLURM for array jobs; "
                                      "pass --shard-index and --num-shards to choose the shard yourself)")
            values[name] = int(text)
    return values
