"""``audio-dialogues push`` and loading published versions back, over real HTTP with the real clients.

The Hub cannot be reached from tests: ``tests/hub_server.py`` speaks the part of its API that
``huggingface_hub`` (push) and ``datasets`` (load) use, on 127.0.0.1. Pushes run in this process with
``huggingface_hub`` pointed at the server (its endpoint and offline constants are set as ``HF_ENDPOINT``
and ``HF_HUB_OFFLINE=0`` would set them); loads run in subprocesses with ``HF_ENDPOINT`` and fresh
``HF_HOME`` / ``HF_DATASETS_CACHE``. The plain-``datasets`` reader runs with ``python -I`` and checks that
``audio_dialogues`` was never imported. A test pushing to the real Hub runs only with a token in
``AUDIO_DIALOGUES_HUB_TOKEN``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audio_dialogues import cli
from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.files import OUTPUT_MANIFEST
from audio_dialogues.sample import sample_paths
from audio_dialogues.sources.annotations import CONFIGS, read_split
from audio_dialogues.sources.metadata import metadata_sources, open_source_metadata
from tests.hub_server import TOKEN, HubServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_paths()
METADATA_ARGS = ["--strong-labels", SAMPLE["strong_labels"], "--ontology", SAMPLE["ontology"],
                 "--musiccaps-csv", SAMPLE["musiccaps_csv"]]


@pytest.fixture(scope="module")
def hub() -> HubServer:
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def hub_client(hub: HubServer) -> HubServer:
    """``huggingface_hub`` in this process talks to the stand-in, with the test token, plain LFS."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "ENDPOINT", hub.url)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
        mp.setenv("HF_TOKEN", TOKEN)
        yield hub


ANNOTATIONS, WITH_AUDIO = "tester/annotations", "tester/with-audio"


@pytest.fixture(scope="module")
def published(hub_client: HubServer) -> HubServer:
    """Two pushed repos: every config annotation-only, and music + comparison with audio (private, branch v1)."""
    assert push(ANNOTATIONS) == 0
    assert push(WITH_AUDIO, "--embed-audio", "--private", "--revision", "v1", "--config", "music",
                "--config", "comparison") == 0
    return hub_client


def push(*args: str, data_dir: str = SAMPLE["data_dir"]) -> int:
    return cli.main(["push", *args, "--data-dir", data_dir, *METADATA_ARGS, "--audio-dir", SAMPLE["audio_dir"],
                     "--audio-cache-dir", os.environ["AUDIO_DIALOGUES_CACHE"]])


def run_python(code: str, hub: HubServer, home: Path, *, isolated: bool = False, keep: tuple[str, ...] = ()) -> dict:
    """Run ``code`` in a fresh interpreter against the stand-in; it prints one JSON line, returned parsed.
    ``keep``: variables of this process's environment passed on."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("HF_", "AUDIO_DIALOGUES_")) or k in keep}
    environ.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=str(home / "hf"),
                   HF_DATASETS_CACHE=str(home / "datasets"), HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_DATASETS_DISABLE_PROGRESS_BARS="1", AUDIO_DIALOGUES_CACHE=str(home / "clips"))
    if isolated:
        environ.pop("PYTHONPATH", None)
    else:
        environ["PYTHONPATH"] = str(ROOT)
    code = f"ANNOTATIONS, WITH_AUDIO = {ANNOTATIONS!r}, {WITH_AUDIO!r}\n" + textwrap.dedent(code)
    out = subprocess.run([sys.executable, *(["-I"] if isolated else []), "-c", code], capture_output=True,
                         text=True, env=environ, cwd=home, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def sample_records(config: str, split: str) -> list:
    """The sample release's records as the package reads them, completed from the sample metadata."""
    metadata = open_source_metadata(metadata_sources(config, strong_labels=SAMPLE["strong_labels"],
                                                     ontology=SAMPLE["ontology"],
                                                     musiccaps_csv=SAMPLE["musiccaps_csv"]))
    return read_split(config, split, data_dir=SAMPLE["data_dir"], metadata=metadata)


def expected_rows(config: str, split: str) -> dict[str, dict]:
    """id -> turns and clips of the sample release."""
    return {r.id: {"turns": [t.to_dict() for t in r.turns], "clips": [c.to_dict() for c in r.clips]}
            for r in sample_records(config, split)}


def test_push_writes_the_repo_and_unchanged_data_makes_no_commit(
        published: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = published.files(ANNOTATIONS)
    for config in CONFIGS:
        for split in ("train", "test"):
            assert f"data/{config}/{split}-00000-of-00001.parquet" in files
    assert {p for p in files if p.startswith("images/")} >= {f"images/{c}_turns.png" for c in CONFIGS}
    assert "README.md" in files

    # --output-dir writes exactly what was pushed
    out = tmp_path / "folder"
    assert cli.main(["push", ANNOTATIONS, "--data-dir", SAMPLE["data_dir"], *METADATA_ARGS, "--audio-dir",
                     SAMPLE["audio_dir"], "--audio-cache-dir", os.environ["AUDIO_DIALOGUES_CACHE"],
                     "--output-dir", str(out)]) == 0
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert written.pop(OUTPUT_MANIFEST)  # what marks the folder as push's own (to replace it whole): never uploaded
    assert written == {p: data for p, data in files.items() if p != ".gitattributes"}

    # pushing the same data again: nothing uploaded, no commit
    head, commits = published.head(ANNOTATIONS), published.commit_count(ANNOTATIONS)
    capsys.readouterr()
    assert push(ANNOTATIONS) == 0
    assert "unchanged" in capsys.readouterr().out
    assert published.head(ANNOTATIONS) == head and published.commit_count(ANNOTATIONS) == commits

    # --private and --revision: a private repo, the version on its own branch
    assert published.repos[WITH_AUDIO].private and set(published.repos[WITH_AUDIO].branches) == {"main", "v1"}
    assert "README.md" not in published.files(WITH_AUDIO, "main")


def test_shards_carry_only_standard_feature_types(published: HubServer, tmp_path: Path) -> None:
    seen = set()
    for repo, revision in ((ANNOTATIONS, "main"), (WITH_AUDIO, "v1")):
        for path, data in published.files(repo, revision).items():
            if path.endswith(".parquet"):
                (tmp_path / "shard.parquet").write_bytes(data)
                meta = json.loads(pq.read_schema(tmp_path / "shard.parquet").metadata[b"huggingface"])
                types = set(_feature_types(meta["info"]["features"]))
                assert types <= {"Value", "List", "Audio"}, (repo, path, types)
                seen |= types
    assert "Audio" in seen


def _feature_types(feature: object) -> list[str]:
    if isinstance(feature, dict):
        found = [feature["_type"]] if isinstance(feature.get("_type"), str) else []
        return found + [t for v in feature.values() for t in _feature_types(v)]
    if isinstance(feature, list):
        return [t for v in feature for t in _feature_types(v)]
    return []


PLAIN_READER = """
    import json, sys
    import datasets
    out = {"annotations": {}, "audio": {}}
    for config in ("audioset", "music", "comparison"):
        eager = datasets.load_dataset(ANNOTATIONS, config)
        streamed = datasets.load_dataset(ANNOTATIONS, config, streaming=True) if config == "comparison" else None
        for split in ("train", "test"):
            out["annotations"][f"{config}/{split}"] = {
                "rows": list(eager[split]), "features": list(eager[split].features),
                "streamed": list(streamed[split]) if streamed else None}
    for config in ("music", "comparison"):
        for row in datasets.load_dataset(WITH_AUDIO, config, split="test", revision="v1"):
            audios = row["audios"] if config == "comparison" else [row["audio"]]
            clips = row["clips"] if config == "comparison" else [row["clip"]]
            for clip, audio in zip(clips, audios):
                key = f"{clip['ytid']}_{clip['start_s']:g}"
                if audio is None:
                    out["audio"][key] = None
                    continue
                samples = audio.get_all_samples()
                np_path = f"{key}.npy"
                import numpy as np
                np.save(np_path, samples.data.numpy().mean(axis=0))
                out["audio"][key] = samples.sample_rate
    out["imported"] = "audio_dialogues" in sys.modules
    print(json.dumps(out))
"""


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("torchcodec")  # plain datasets >= 4 decodes its Audio feature with torchcodec only
def test_plain_datasets_reads_every_config_and_decodes_embedded_audio(published: HubServer, tmp_path: Path) -> None:
    """Plain ``datasets`` in ``python -I``: annotations eager (every config) and streaming; embedded audio decoded."""
    got = run_python(PLAIN_READER, published, tmp_path, isolated=True)
    assert got["imported"] is False
    for key, value in got["annotations"].items():
        config, split = key.split("/")
        rows = {r["id"]: r for r in value["rows"]}
        expected = expected_rows(config, split)
        assert set(rows) == set(expected)
        for record_id, want in expected.items():
            row = rows[record_id]
            assert row["turns"] == want["turns"]
            assert (row["clips"] if config == "comparison" else [row["clip"]]) == want["clips"]
        if config == "comparison":  # streaming reads the same rows (one config: each load costs seconds)
            assert value["streamed"] == value["rows"]
        assert "audio" not in value["features"] and "audios" not in value["features"]  # annotation-only

    resolver = AudioResolver([SAMPLE["audio_dir"]])
    checked = 0
    for config in ("music", "comparison"):
        for record in sample_records(config, "test"):
            for clip in record.clips:
                key = f"{clip.ytid}_{clip.start_s:g}"
                source = resolver.resolve(clip)
                if source is None:
                    assert got["audio"].get(key) is None
                    continue
                want, rate = sf.read(source, dtype="float32", always_2d=True)
                assert got["audio"][key] == rate
                np.testing.assert_allclose(np.load(tmp_path / f"{key}.npy"), want.mean(axis=1), atol=1e-4)
                checked += 1
    assert checked >= 3


PACKAGE_READER = """
    import json, os
    import numpy as np
    import datasets
    import audio_dialogues
    sample = audio_dialogues.sample_paths()
    out = {}
    local = datasets.load_dataset("audio_dialogues", "music", **sample)
    published = datasets.load_dataset("audio_dialogues", "music", repo_id=ANNOTATIONS, audio_dir=sample["audio_dir"])
    for split in ("train", "test"):
        a, b = local[split], published[split]
        out[split] = {"ids": [list(a["id"]), list(b["id"])],
                      "same_audio": all(np.array_equal(x["audio"]["array"], y["audio"]["array"])
                                        for x, y in zip(a, b)),
                      "same_text": [x["turns"] for x in a] == [y["turns"] for y in b]}
    streamed = datasets.load_dataset("audio_dialogues", "music", split="test", repo_id=ANNOTATIONS, streaming=True,
                                     audio_dir=sample["audio_dir"])
    out["streamed"] = sorted((r["id"], len(r["audio"]["array"])) for r in streamed)
    out["eager"] = sorted((r["id"], len(r["audio"]["array"])) for r in published["test"])

    # embedded audio, and no audio folder at all
    embedded = datasets.load_dataset("audio_dialogues", "music", split="test", repo_id=WITH_AUDIO, revision="v1",
                                     audio_cache_dir="empty-cache")
    out["embedded"] = {"ids": [list(local["test"]["id"]), list(embedded["id"])],
                       "same_audio": all(np.array_equal(x["audio"]["array"], y["audio"]["array"])
                                         for x, y in zip(local["test"], embedded))}

    os.environ["AUDIO_DIALOGUES_REPO"] = ANNOTATIONS
    by_env = datasets.load_dataset("audio_dialogues", "comparison", split="test", audio_dir=sample["audio_dir"])
    out["env_ids"] = sorted(by_env["id"])
    del os.environ["AUDIO_DIALOGUES_REPO"]
    try:
        datasets.load_dataset("audio_dialogues", "music")
    except Exception as e:
        out["no_source"] = str(e)
    print(json.dumps(out))
"""


@pytest.mark.timeout(240)
def test_package_loads_published_repos_like_a_local_release(published: HubServer, tmp_path: Path) -> None:
    """repo_id= (eager, streaming), embedded audio with no audio folder, AUDIO_DIALOGUES_REPO, no source at all."""
    got = run_python(PACKAGE_READER, published, tmp_path)
    for split in ("train", "test"):
        local_ids, published_ids = got[split]["ids"]
        assert published_ids == local_ids and local_ids
        assert got[split]["same_audio"] and got[split]["same_text"]
    assert got["streamed"] == got["eager"] and got["eager"]
    assert got["embedded"]["ids"][0] == got["embedded"]["ids"][1] and got["embedded"]["same_audio"]
    assert got["env_ids"] == sorted(expected_rows("comparison", "test"))
    message = got["no_source"]
    assert "data_dir=" in message and "repo_id=" in message and "audio-dialogues generate" in message
    assert "AUDIO_DIALOGUES_REPO" in message


def test_a_private_push_to_a_public_repo_is_refused(published: HubServer, capsys: pytest.CaptureFixture) -> None:
    """create_repo(exist_ok=True) keeps an existing repo's visibility: --private must not publish publicly."""
    head, commits = published.head(ANNOTATIONS), published.commit_count(ANNOTATIONS)
    branches = set(published.repos[ANNOTATIONS].branches)
    for revision in ([], ["--revision", "private-try"]):
        capsys.readouterr()
        assert push(ANNOTATIONS, "--private", *revision) == 1
        err = capsys.readouterr().err
        assert f"{ANNOTATIONS} already exists and is not private" in err and "Traceback" not in err
    assert not published.repos[ANNOTATIONS].private and set(published.repos[ANNOTATIONS].branches) == branches
    assert published.head(ANNOTATIONS) == head and published.commit_count(ANNOTATIONS) == commits
    assert push(WITH_AUDIO, "--private", "--revision", "v1", "--config", "music", "--config", "comparison",
                "--embed-audio") == 0  # an existing private repo takes private pushes


@pytest.mark.timeout(240)
def test_a_failed_upload_leaves_the_branch_unchanged_and_a_rerun_completes(
        hub_client: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = "tester/faults"
    assert push(repo, "--config", "music") == 0
    before_head, before_files = hub_client.head(repo), hub_client.files(repo)

    data = tmp_path / "data"
    shutil.copytree(SAMPLE["data_dir"], data)
    for name in ("music_train.jsonl", "music_test.json"):  # both shards change: two LFS uploads
        edited = data / name
        edited.write_text(edited.read_text().replace('"assistant": "', f'"assistant": "{uuid.uuid4().hex} ', 1))
    hub_client.fail_lfs_uploads(after=1, status=507)  # the first LFS object goes up, the next ones fail
    capsys.readouterr()
    try:
        assert push(repo, "--config", "music", data_dir=str(data)) == 1
    finally:
        hub_client.heal()
    err = capsys.readouterr().err
    assert "HTTP 507" in err and "branch is unchanged" in err
    assert hub_client.head(repo) == before_head and hub_client.files(repo) == before_files

    assert push(repo, "--config", "music", data_dir=str(data)) == 0
    assert hub_client.head(repo) != before_head
    after = hub_client.files(repo)
    assert after["data/music/train-00000-of-00001.parquet"] != before_files["data/music/train-00000-of-00001.parquet"]
    assert after["data/music/test-00000-of-00001.parquet"] != before_files["data/music/test-00000-of-00001.parquet"]


def _comparison_with_wavs(root: Path, seconds: list[float], clips: int = 4,
                          rate: int = 8_000) -> tuple[Path, Path, dict[str, bytes]]:
    """Comparison records of ``clips`` WAV clips (16-bit, ``rate`` Hz mono) of ``seconds[i]`` in record ``i``;
    the clips' bytes by name."""
    data, audio = root / "data", root / "audio"
    data.mkdir(parents=True)
    audio.mkdir()
    noise = np.random.default_rng(0)
    written = {}
    with open(data / "comparison_train.jsonl", "w", encoding="utf-8") as f:
        for i, length in enumerate(seconds):
            record_clips = []
            for k in range(clips):
                ytid, start = f"cl{i:03d}_{k}-abcd"[:11], 20.0 * k
                name = f"{ytid}_{start:g}_{start + length:g}.wav"
                sf.write(audio / name, noise.uniform(-0.5, 0.5, int(length * rate)).astype(np.float32), rate,
                         subtype="PCM_16")
                written[name] = (audio / name).read_bytes()
                record_clips.append({"ytid": ytid, "start_s": start, "end_s": start + length})
            f.write(json.dumps({"id": f"cmp-{i}", "clips": record_clips,
                                "turns": [{"user": "Which clip is loudest?", "assistant": "The first."}]}) + "\n")
    return data, audio, written


@pytest.mark.timeout(240)
def test_embedded_shards_and_row_groups_are_sized_by_bytes(hub_client: HubServer, tmp_path: Path) -> None:
    """Row groups and shards keep byte limits whatever the audio weighs (100 rows of WAV once made a 732 MiB group)."""
    from audio_dialogues.publish import PublishError
    from audio_dialogues.publish import push as push_api

    # rows of 4 x 32 kB and of 4 x 224 kB, 6.1 MB in all: a light row waits for the next, and with a heavy one
    # would pass the row-group limit
    data, audio, written = _comparison_with_wavs(tmp_path, [2.0, 14.0] * 6)
    group_limit, shard_limit = 1 << 20, 2_000_000
    push_api("tester/sized", data, ["comparison"], embed_audio=True, audio_dir=str(audio),
             max_row_group_bytes=group_limit, max_shard_bytes=shard_limit)
    shards = {path: blob for path, blob in hub_client.files("tester/sized").items() if path.endswith(".parquet")}
    assert len(shards) >= 2
    seen, groups = {}, []
    for path, blob in shards.items():
        assert len(blob) <= shard_limit, path
        (tmp_path / "shard.parquet").write_bytes(blob)
        meta = pq.ParquetFile(tmp_path / "shard.parquet").metadata
        groups += [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
        for row in pq.read_table(tmp_path / "shard.parquet").to_pylist():
            seen.update((audio["path"], audio["bytes"]) for audio in row["audios"])
    assert max(groups) <= group_limit and len(groups) > len(shards)  # several row groups per shard
    assert seen == written

    # one row heavier than a row group may be cannot be split: refused by name, nothing sent
    heavy, heavy_audio, _ = _comparison_with_wavs(tmp_path / "heavy", [10.0], rate=16_000)
    with pytest.raises(PublishError, match=r"comparison/train: row 'cmp-0' holds 1\.2 MiB, more than a row group"):
        push_api("tester/too-heavy", heavy, ["comparison"], embed_audio=True, audio_dir=str(heavy_audio),
                 max_row_group_bytes=group_limit, max_shard_bytes=shard_limit)
    assert "tester/too-heavy" not in hub_client.repos


def test_push_without_a_token_says_where_to_put_one(
        hub_client: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no saved login either
    assert push("tester/no-token", "--config", "music") == 1
    assert "HF_TOKEN" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("AUDIO_DIALOGUES_HUB_TOKEN"),
                    reason="pushes to the real Hub: set AUDIO_DIALOGUES_HUB_TOKEN (and optionally "
                           "AUDIO_DIALOGUES_HUB_REPO, default <user>/audio-dialogues-test) to run")
@pytest.mark.timeout(600)
def test_push_to_the_real_hub(tmp_path: Path) -> None:
    """Push the sample to a private repo on huggingface.co and read it back with plain datasets."""
    token = os.environ["AUDIO_DIALOGUES_HUB_TOKEN"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update(HF_TOKEN=token, HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "ds"),
                   PYTHONPATH=str(ROOT))
    code = f"""
        import json, os
        from huggingface_hub import whoami
        from audio_dialogues.publish import push
        repo = os.environ.get("AUDIO_DIALOGUES_HUB_REPO") or whoami()["name"] + "/audio-dialogues-test"
        sample = {SAMPLE!r}
        data_dir = sample.pop("data_dir")
        result = push(repo, data_dir, ["music"], private=True, **sample)
        import datasets
        ds = datasets.load_dataset(repo, "music", split="test", revision=result.commit)
        print(json.dumps({{"ids": sorted(ds["id"])}}))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=environ, timeout=540)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["ids"] == sorted(expected_rows("music", "test"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("every_s", [0.2, 60.0], ids=["trickle", "stall"])
def test_a_push_to_a_trickling_hub_ends_within_its_deadline(hub_client: HubServer, tmp_path: Path, every_s: float,
                                                            capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub that sends an API answer's headers, then a byte every 0.2 s (or one byte and no more), ends the
    push with the package's error naming the endpoint and the deadline, the branch as it was and the local files
    kept (fails on the old code: huggingface_hub's client has no timeout for API calls, so the push waits for the
    last byte, a minute or more)."""
    repo = "tester/stalls"
    assert push(repo, "--config", "music") == 0
    before_head, before_files = hub_client.head(repo), hub_client.files(repo)
    data = tmp_path / "data"
    shutil.copytree(SAMPLE["data_dir"], data)
    edited = data / "music_test.json"
    edited.write_text(edited.read_text().replace('"assistant": "', f'"assistant": "{uuid.uuid4().hex} ', 1))
    kept = {p.name: p.read_bytes() for p in data.iterdir()}
    monkeypatch.setenv("AUDIO_DIALOGUES_HUB_TIMEOUT", "1")
    hub_client.trickle(r"^POST /api/datasets/[^ ]+/preupload/", every_s)
    capsys.readouterr()
    started = time.monotonic()
    try:
        assert push(repo, "--config", "music", data_dir=str(data)) == 1
    finally:
        hub_client.heal()
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert elapsed < 20, elapsed
    assert "/preupload/" in err and "no whole answer within 1 s" in err and "Traceback" not in err
    assert "branch is unchanged" in err
    assert hub_client.head(repo) == before_head and hub_client.files(repo) == before_files
    assert {p.name: p.read_bytes() for p in data.iterdir()} == kept


TRICKLED_LOAD = """
    import json, time
    import datasets
    import audio_dialogues
    started = time.monotonic()
    try:
        datasets.load_dataset("audio_dialogues", "music", repo_id=ANNOTATIONS,
                              audio_dir=audio_dialogues.sample_paths()["audio_dir"])
        out = {"error": None}
    except Exception as e:
        out = {"error": str(e), "ours": isinstance(e, audio_dialogues.AudioDialoguesError)}
    out["elapsed"] = time.monotonic() - started
    print(json.dumps(out))
"""


@pytest.mark.timeout(180)
def test_loading_a_published_repo_from_a_trickling_hub_ends_within_its_deadline(
        published: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard download that trickles a byte every 0.2 s ends the load with the package's error naming the file
    and the deadline (fails on the old code: huggingface_hub's timeouts are per read, so the load waits for the
    whole shard, several minutes)."""
    monkeypatch.setenv("AUDIO_DIALOGUES_HUB_TIMEOUT", "2")
    published.trickle(r"^GET /datasets/[^ ]+/resolve/[^ ]+\.parquet")
    try:
        got = run_python(TRICKLED_LOAD, published, tmp_path, keep=("AUDIO_DIALOGUES_HUB_TIMEOUT",))
    finally:
        published.heal()
    assert got["error"] and got["ours"], got
    assert ".parquet" in got["error"] and "no whole answer within 2 s" in got["error"], got
    assert got["elapsed"] < 40, got
