"""Streaming into training loops: every example exactly once across DataLoader workers and ranks."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from datasets.distributed import split_dataset_by_node

import audio_dialogues

SAMPLE = audio_dialogues.sample_paths()
N_RECORDS = 23  # deliberately not a multiple of the shard, worker or rank counts


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A music test split of N_RECORDS dialogues over the sample's audio (ids unique, clips reused)."""
    root = tmp_path_factory.mktemp("many")
    (root / "data").mkdir()
    audio = Path(SAMPLE["audio_dir"])
    ytids = ["Tq8_Lp2-Xv0", "bN5-hR7_wK1", "Ju4_Ye6-Gz2", "-Po9_Ui8-Ty"]
    starts = {"Tq8_Lp2-Xv0": 30.0, "bN5-hR7_wK1": 0.0, "Ju4_Ye6-Gz2": 50.0, "-Po9_Ui8-Ty": 15.0}
    with open(root / "data" / "music_test.jsonl", "w") as f:
        for i in range(N_RECORDS):
            y = ytids[i % len(ytids)]
            clip = {"ytid": y, "start_s": starts[y], "end_s": starts[y] + 10}
            turns = [{"user": f"question {i}", "assistant": f"answer {i}"}]
            f.write(json.dumps({"id": f"r{i:03d}", "clips": [clip], "turns": turns}) + "\n")
    shutil.copytree(audio, root / "audio")
    return {"data_dir": str(root / "data"), "audio_dir": str(root / "audio"), "musiccaps_csv": SAMPLE["musiccaps_csv"]}


def _ids(rows) -> list[str]:
    return [r["id"] for r in rows]


def test_streaming_yields_the_same_rows_as_eager(many: dict, tmp_path: Path) -> None:
    eager = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), **many)
    stream = audio_dialogues.load("music", split="test", streaming=True, **many)
    assert stream.n_shards == 8
    rows = list(stream)
    assert _ids(rows) == eager["id"]
    assert rows[5]["caption"] == eager[5]["caption"] and rows[5]["clip"] == eager[5]["clip"]
    assert len(rows[5]["audio"]["array"]) == len(eager[5]["audio"]["array"]) == 160_000


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("num_workers", [2, 3])
def test_dataloader_workers_see_every_example_once(many: dict, num_workers: int, torch: ModuleType) -> None:
    stream = audio_dialogues.load("music", split="test", streaming=True, **many)
    loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=num_workers,
                                         collate_fn=lambda batch: [(r["id"], len(r["audio"]["array"])) for r in batch])
    seen = Counter()
    for batch in loader:
        for example_id, n_samples in batch:
            seen[example_id] += 1
            assert n_samples == 160_000
    assert seen == Counter(f"r{i:03d}" for i in range(N_RECORDS))


@pytest.mark.parametrize("world_size,num_shards", [(2, 8), (3, 8), (4, 4), (5, 8)])
def test_split_dataset_by_node_covers_every_example_once(many: dict, world_size: int, num_shards: int) -> None:
    stream = audio_dialogues.load("music", split="test", streaming=True, num_shards=num_shards,
                                  decoder="none", **many)
    seen = Counter()
    for rank in range(world_size):
        seen.update(_ids(split_dataset_by_node(stream, rank=rank, world_size=world_size)))
    assert seen == Counter(f"r{i:03d}" for i in range(N_RECORDS))


def test_ranks_and_workers_together(many: dict, torch: ModuleType) -> None:
    stream = audio_dialogues.load("music", split="test", streaming=True, decoder="none", **many)
    seen = Counter()
    for rank in range(2):
        node = split_dataset_by_node(stream, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(node, batch_size=None, num_workers=2)
        seen.update(r["id"] for r in loader)
    assert seen == Counter(f"r{i:03d}" for i in range(N_RECORDS))


def test_the_first_example_comes_before_the_rest_of_the_split_is_read(many: dict, tmp_path: Path) -> None:
    """Each shard reads its own part of the annotations: a bad record at the end of the file is only met by the
    shard that owns it, after the first shards' examples have been yielded (an eager read would fail at once)."""
    data = tmp_path / "data"
    shutil.copytree(many["data_dir"], data)
    with open(data / "music_test.jsonl", "a") as f:
        f.write('{"id": "broken", "clips": [{"ytid": "Tq8_Lp2-Xv0"}], "turns": []}\n')
    stream = audio_dialogues.load("music", split="test", streaming=True, decoder="none",
                                  **{**many, "data_dir": str(data)})
    rows = iter(stream)
    assert next(rows)["id"] == "r000"
    seen = ["r000"]
    with pytest.raises(Exception, match=r"music_test.jsonl:24 .*turns is empty"):
        for row in rows:
            seen.append(row["id"])
    # The shards before the one owning the bad record gave all their examples, in order, once.
    assert len(seen) >= N_RECORDS * 7 // 8 - 1 and seen == [f"r{i:03d}" for i in range(len(seen))]


def test_missing_audio_policies_hold_in_a_stream(many: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(many["data_dir"], data)
    with open(data / "music_test.jsonl", "a") as f:
        clip = {"ytid": "Wd3-Xs2_Za1", "start_s": 90.0, "end_s": 100.0}
        f.write(json.dumps({"id": "no-audio", "clips": [clip], "turns": [{"user": "q", "assistant": "a"}]}) + "\n")
    inputs = {**many, "data_dir": str(data), "decoder": "none"}
    dropped = [r["id"] for r in audio_dialogues.load("music", split="test", streaming=True, **inputs)]
    assert dropped == [f"r{i:03d}" for i in range(N_RECORDS)]
    assert "part 8/8: dropped 1 of" in caplog.text and "no audio found: 1" in caplog.text
    kept = list(audio_dialogues.load("music", split="test", streaming=True, missing_audio="keep", **inputs))
    assert kept[-1]["id"] == "no-audio" and kept[-1]["audio"] is None
    with pytest.raises(FileNotFoundError, match=r"music_test.jsonl:24 \(id 'no-audio'\): no audio for clip Wd3"):
        list(audio_dialogues.load("music", split="test", streaming=True, missing_audio="error", **inputs))


def test_torchcodec_audio_round_trips_through_pickle(many: dict, torchcodec: ModuleType) -> None:
    """An example's decoder object pickles by name and opens again with the same samples, decoded or not yet."""
    import pickle

    from audio_dialogues.dataset import decoding

    example = next(iter(audio_dialogues.load("music", split="test", streaming=True, decoder="torchcodec", **many)))
    audio = example["audio"]
    assert type(audio) is decoding.StableAudioDecoder
    assert type(audio).__module__ == "audio_dialogues.dataset.decoding"
    assert type(audio).__qualname__ == "StableAudioDecoder"
    assert pickle.loads(pickle.dumps(type(audio))) is type(audio)
    fresh = pickle.loads(pickle.dumps(audio))  # not decoded yet: reopened from its path
    assert type(fresh) is type(audio)
    reference = audio["array"]
    assert len(reference) == 160_000
    import numpy as np

    np.testing.assert_array_equal(fresh["array"], reference)
    decoded = pickle.loads(pickle.dumps(audio))  # decoded: the samples travel along
    np.testing.assert_array_equal(decoded["array"], reference)
    assert decoded["sampling_rate"] == audio["sampling_rate"]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_dataloader_workers_send_torchcodec_examples(many: dict, torch: ModuleType, torchcodec: ModuleType) -> None:
    """Workers hand whole examples (decoder objects included) to the main process, which gets every one."""
    stream = audio_dialogues.load("music", split="test", streaming=True, decoder="torchcodec", **many)
    loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=2, timeout=120,
                                         collate_fn=lambda batch: batch)
    seen = Counter()
    for batch in loader:
        for example in batch:
            seen[example["id"]] += 1
            assert len(example["audio"]["array"]) == 160_000
    assert seen == Counter(f"r{i:03d}" for i in range(N_RECORDS))
