"""``fetch`` as a SLURM array: the array variables pick the shard, explicit options win, bad values are usage
errors; each shard journals to its own file and one ``status`` reads them all.

Real fetches (yt-dlp, ffmpeg) against ``tests/media_server.py`` on 127.0.0.1, with the variables SLURM sets
for an array task put in the environment of the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audio_dialogues.fetch import journal
from audio_dialogues.fetch.sharding import ShardChoice, SlurmArrayError, choose_shard, shard_index_of
from tests.media_server import make_clips, source_server, write_annotations

ROOT = Path(__file__).resolve().parents[1]


def array(task: int, count: int, low: int = 0, step: int | None = None, high: int | None = None, **more: str
          ) -> dict[str, str]:
    """The variables of one task of ``sbatch --array=low-high:step`` (as SLURM sets them)."""
    env = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
           "SLURM_ARRAY_TASK_MIN": str(low),
           "SLURM_ARRAY_TASK_MAX": str(high if high is not None else low + (count - 1) * (step or 1))}
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    return {**env, **more}


@pytest.mark.parametrize("env,index,count", [
    (array(5, 8), 5, 8),                        # --array=0-7
    (array(1, 16, low=1), 0, 16),               # --array=1-16: ids start at 1
    (array(16, 16, low=1), 15, 16),
    (array(6, 16, step=2), 3, 16),              # --array=0-30:2
    (array(7, 4, low=1, step=2), 3, 4),         # --array=1-7:2 (1, 3, 5, 7)
    (array(9, 100), 9, 100),                    # --array=0-99%10: a throttle changes no variable
])
def test_slurm_array_variables_pick_the_shard(env: dict, index: int, count: int) -> None:
    choice = choose_shard(None, None, env)
    assert (choice.index, choice.count, choice.source) == (index, count, "slurm")
    assert choice.describe().startswith(f"shard {index} of {count}, from the SLURM array job (SLURM_ARRAY_JOB_ID=4242")


def test_explicit_options_win_over_the_array() -> None:
    env = array(5, 8)
    assert choose_shard(2, 4, env) == ShardChoice(2, 4, "options")
    # --num-shards alone: the task id is the shard index (sbatch --array=3,7 re-runs shards 3 and 7 of 16).
    listed = array(7, 2, low=3, high=7)
    assert (choose_shard(None, 16, listed).index, choose_shard(None, 16, listed).count) == (7, 16)
    assert choose_shard(None, None, {}) == ShardChoice()
    assert choose_shard(None, 4, {}) == ShardChoice(0, 4, "options")
    assert choose_shard(None, None, {"SLURM_JOB_ID": "1"}) == ShardChoice()  # a plain job is no array


@pytest.mark.parametrize("env,num_shards,message", [
    (array(3, 3, high=7), None, "3 tasks from 0 to 7 are not a range with step 1"),  # --array=0,3,7
    (array(3, 4, step=2), None, "task 3 is not one of the array's ids 0, 2, ..., 6"),
    ({**array(1, 2), "SLURM_ARRAY_TASK_ID": "1a"}, None, "SLURM_ARRAY_TASK_ID='1a' is not a whole number"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, None, "SLURM_ARRAY_TASK_COUNT is not"),
    (array(16, 17), 16, "SLURM_ARRAY_TASK_ID=16 is no shard index of --num-shards 16"),
])
def test_inconsistent_array_variables_are_refused(env: dict, num_shards: int | None, message: str) -> None:
    with pytest.raises(SlurmArrayError) as err:
        choose_shard(None, num_shards, env)
    assert message in str(err.value)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with source_server(tmp_path_factory.mktemp("media")) as srv:
        yield srv


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run([sys.executable, "-m", "audio_dialogues.cli", *cmd], capture_output=True, text=True,
                          timeout=300, env={**base, "PYTHONPATH": str(ROOT), **(env or {})})


def test_array_tasks_fetch_their_shards_and_one_status_reads_every_journal(server, tmp_path: Path) -> None:
    clips = make_clips(server, "slurm", 6)
    shard_of = {c.ytid: shard_index_of(c.ytid, 2) for c in clips}
    assert set(shard_of.values()) == {0, 1}
    data, cache = write_annotations(tmp_path / "data", clips), tmp_path / "cache"
    fetch = ["fetch", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache), "--url-template",
             server.url_template("m4a"), "--workers", "2", "--no-progress"]
    status = ["status", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache), "--json"]

    done = run(fetch, array(1, 2, low=1))  # --array=1-2: task 1 is shard 0
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("fetch audioset: shard 0 of 2, from the SLURM array job (SLURM_ARRAY_JOB_ID=4242, "
                            "SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_COUNT=2, SLURM_ARRAY_TASK_MIN=1")
    mine = sum(1 for s in shard_of.values() if s == 0)
    assert f"audioset: {mine} clips (shard 0 of 2; {6 - mine} in other shards)" in done.stdout
    assert [p.name for p in journal.journal_files(cache)] == [f"{journal.host_name()}.shard-0-of-2.jsonl"]
    report = json.loads(run(status).stdout)
    shards = report["shards"]["shards"]
    assert report["shards"]["num_shards"] == 2 and [s["present"] for s in shards] == [mine, 0]
    assert shards[1]["journals"] == [] and shards[1]["to_try_by_class"]["never_tried"] == 6 - mine
    assert (report["total"]["present"], report["total"]["to_try"]) == (mine, 6 - mine)

    done = run(fetch, array(2, 2, low=1))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fetch audioset: shard 1 of 2, from the SLURM array job")
    report = json.loads(run(status).stdout)
    assert (report["total"]["present"], report["total"]["to_try"], len(report["journals"])) == (6, 0, 2)
    assert [s["journals"] for s in report["shards"]["shards"]] == [
        [f"{journal.host_name()}.shard-{i}-of-2.jsonl"] for i in range(2)]
    text = run(status[:-1]).stdout
    assert "by shard (of 2" in text and "  shard 1: " in text and "no journal" not in text


def test_fetch_options_win_and_bad_array_values_are_usage_errors(server, tmp_path: Path) -> None:
    clips = make_clips(server, "slopt", 4)
    data, cache = write_annotations(tmp_path / "data", clips), tmp_path / "cache"
    fetch = ["fetch", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache), "--url-template",
             server.url_template("m4a"), "--no-progress"]
    done = run([*fetch, "--num-shards", "1", "--shard-index", "0"], array(1, 2))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audioset: 4 clips\n") and "SLURM" not in done.stdout
    done = run(fetch, array(3, 3, high=7))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "do not name one shard: 3 tasks from 0 to 7 are not a range" in done.stderr
