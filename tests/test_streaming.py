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
    """An example's decoder object pickles by name; unpickled, it opens its source only when it must.

    A decoded example's samples travel along: it unpickles and answers with its source file gone, opening
    nothing. One not decoded yet opens its source on first use, so it fails once the file is gone.
    """
    import pickle

    import numpy as np

    from audio_dialogues.dataset import decoding

    example = next(iter(audio_dialogues.load("music", split="test", streaming=True, decoder="torchcodec", **many)))
    audio = example["audio"]
    assert type(audio) is decoding.StableAudioDecoder
    assert type(audio).__module__ == "audio_dialogues.dataset.decoding"
    assert type(audio).__qualname__ == "StableAudioDecoder"
    assert pickle.loads(pickle.dumps(type(audio))) is type(audio)
    undecoded = pickle.dumps(audio)
    fresh = pickle.loads(undecoded)
    assert type(fresh) is type(audio) and "_decoder" not in fresh.__dict__  # nothing opened by unpickling
    reference = audio["array"]
    assert len(reference) == 160_000
    np.testing.assert_array_equal(fresh["array"], reference)  # opened from its path on first use
    decoded = pickle.dumps(audio)
    source = Path(audio.metadata.path)
    moved = source.with_name(source.name + ".away")
    source.rename(moved)
    try:
        travelled = pickle.loads(decoded)
        np.testing.assert_array_equal(travelled["array"], reference)
        assert travelled["sampling_rate"] == audio["sampling_rate"]
        assert "_decoder" not in travelled.__dict__ and travelled.metadata.codec == audio.metadata.codec
        with pytest.raises(decoding.AudioDecodeError, match=rf"{source.name}: torchcodec could not open it"):
            pickle.loads(undecoded)["array"]
    finally:
        moved.rename(source)


def test_embedded_torchcodec_audio_pickles_its_samples_not_its_bytes(many: dict, torchcodec: ModuleType) -> None:
    """Decoded embedded audio pickles without its encoded bytes; the samples answer everything torchcodec would."""
    import pickle

    import numpy as np

    from audio_dialogues.dataset.decoding import TorchcodecAudio

    encoded = next(Path(many["audio_dir"]).glob("*.flac")).read_bytes()
    audio = TorchcodecAudio(sampling_rate=16_000, num_channels=1).decode_example({"path": "x.flac", "bytes": encoded})
    reference = audio["array"]
    blob = pickle.dumps(audio)
    assert len(blob) < reference.nbytes + len(encoded) // 2
    travelled = pickle.loads(blob)
    assert travelled._hf_encoded["bytes"] is None and "_decoder" not in travelled.__dict__
    np.testing.assert_array_equal(travelled["array"], reference)
    assert travelled.metadata.codec == "flac" and travelled["sampling_rate"] == 16_000
    again = travelled.get_all_samples()  # torchcodec's own API, served from the samples
    assert again.sample_rate == 16_000
    np.testing.assert_array_equal(again.data.numpy().reshape(-1), reference)
    part = travelled.get_samples_played_in_range(1.0, 2.0).data.numpy().reshape(-1)
    np.testing.assert_array_equal(part, reference[16_000:32_000])
    undecoded = pickle.loads(pickle.dumps(TorchcodecAudio(num_channels=1).decode_example(
        {"path": "x.flac", "bytes": encoded})))
    assert undecoded._hf_encoded["bytes"] == encoded and len(undecoded["array"]) > 0

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
