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
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audio_dialogues import cli
from audio_dialogues.dataset.local_audio import AudioResolver
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


@pytest.fixture()
def hub_client(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """``huggingface_hub`` in this process talks to the stand-in, with the test token, plain LFS."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


def push(*args: str, data_dir: str = SAMPLE["data_dir"]) -> int:
    return cli.main(["push", *args, "--data-dir", data_dir, *METADATA_ARGS, "--audio-dir", SAMPLE["audio_dir"],
                     "--audio-cache-dir", os.environ["AUDIO_DIALOGUES_CACHE"]])


def run_python(code: str, hub: HubServer, home: Path, *, isolated: bool = False, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter against the stand-in; it prints one JSON line, returned parsed."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUDIO_DIALOGUES_"))}
    environ.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HOME=str(home / "hf"),
                   HF_DATASETS_CACHE=str(home / "datasets"), HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_DATASETS_DISABLE_PROGRESS_BARS="1", AUDIO_DIALOGUES_CACHE=str(home / "clips"), **env)
    if isolated:
        environ.pop("PYTHONPATH", None)
    else:
        environ["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, *(["-I"] if isolated else []), "-c", textwrap.dedent(code)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=environ, cwd=home, timeout=240)
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


PLAIN_READER = """
    import json, sys
    import datasets
    out = {}
    for config in ("audioset", "music", "comparison"):
        eager = datasets.load_dataset(REPO, config)
        streamed = datasets.load_dataset(REPO, config, streaming=True) if config == "comparison" else None
        for split in ("train", "test"):
            rows = list(eager[split])
            out[f"{config}/{split}"] = {"rows": rows, "features": list(eager[split].features),
                                        "streamed": list(streamed[split]) if streamed else None}
    out["imported"] = "audio_dialogues" in sys.modules
    print(json.dumps(out))
"""


@pytest.mark.timeout(240)
def test_push_then_plain_datasets_reads_every_config_eager_and_streaming(
        hub_client: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = "tester/annotations"
    assert push(repo) == 0
    files = hub_client.files(repo)
    for config in CONFIGS:
        for split in ("train", "test"):
            assert f"data/{config}/{split}-00000-of-00001.parquet" in files
    assert {p for p in files if p.startswith("images/")} >= {f"images/{c}_turns.png" for c in CONFIGS}
    assert "README.md" in files
    head = hub_client.head(repo)

    # --output-dir writes exactly what was pushed
    out = tmp_path / "folder"
    assert cli.main(["push", repo, "--data-dir", SAMPLE["data_dir"], *METADATA_ARGS, "--audio-dir",
                     SAMPLE["audio_dir"], "--audio-cache-dir", os.environ["AUDIO_DIALOGUES_CACHE"],
                     "--output-dir", str(out)]) == 0
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert written == {p: data for p, data in files.items() if p != ".gitattributes"}

    # pushing the same data again: nothing uploaded, no commit
    commits = hub_client.commit_count(repo)
    capsys.readouterr()
    assert push(repo) == 0
    assert "unchanged" in capsys.readouterr().out
    assert hub_client.head(repo) == head and hub_client.commit_count(repo) == commits

    got = run_python(f"REPO = {repo!r}\n" + textwrap.dedent(PLAIN_READER), hub_client, tmp_path, isolated=True)
    assert got.pop("imported") is False
    for key, value in got.items():
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


def test_shards_carry_only_standard_feature_types(hub_client: HubServer, tmp_path: Path) -> None:
    repo = "tester/standard-types"
    assert push(repo, "--embed-audio", "--config", "comparison") == 0
    for path, data in hub_client.files(repo).items():
        if path.endswith(".parquet"):
            (tmp_path / "shard.parquet").write_bytes(data)
            meta = json.loads(pq.read_schema(tmp_path / "shard.parquet").metadata[b"huggingface"])
            types = set(_feature_types(meta["info"]["features"]))
            assert types <= {"Value", "List", "Audio"}, (path, types)
            assert "Audio" in types


def _feature_types(feature: object) -> list[str]:
    if isinstance(feature, dict):
        found = [feature["_type"]] if isinstance(feature.get("_type"), str) else []
        return found + [t for v in feature.values() for t in _feature_types(v)]
    if isinstance(feature, list):
        return [t for v in feature for t in _feature_types(v)]
    return []


PACKAGE_READER = """
    import json, os
    import numpy as np
    import datasets
    import audio_dialogues
    sample = audio_dialogues.sample_paths()
    out = {}
    local = datasets.load_dataset("audio_dialogues", "music", **sample)
    published = datasets.load_dataset("audio_dialogues", "music", repo_id=REPO, audio_dir=sample["audio_dir"])
    for split in ("train", "test"):
        a, b = local[split], published[split]
        out[split] = {"ids": [list(a["id"]), list(b["id"])],
                      "same_audio": all(np.array_equal(x["audio"]["array"], y["audio"]["array"])
                                        for x, y in zip(a, b)),
                      "same_text": [x["turns"] for x in a] == [y["turns"] for y in b]}
    streamed = datasets.load_dataset("audio_dialogues", "music", split="test", repo_id=REPO, streaming=True,
                                     audio_dir=sample["audio_dir"])
    out["streamed"] = sorted((r["id"], len(r["audio"]["array"])) for r in streamed)
    out["eager"] = sorted((r["id"], len(r["audio"]["array"])) for r in published["test"])
    os.environ["AUDIO_DIALOGUES_REPO"] = REPO
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
def test_package_loads_a_published_repo_like_a_local_release(hub_client: HubServer, tmp_path: Path) -> None:
    repo = "tester/for-package"
    assert push(repo) == 0
    got = run_python(f"REPO = {repo!r}\n" + textwrap.dedent(PACKAGE_READER), hub_client, tmp_path)
    for split in ("train", "test"):
        local_ids, published_ids = got[split]["ids"]
        assert published_ids == local_ids and local_ids
        assert got[split]["same_audio"] and got[split]["same_text"]
    assert got["streamed"] == got["eager"] and got["eager"]
    assert got["env_ids"] == sorted(expected_rows("comparison", "test"))
    message = got["no_source"]
    assert "data_dir=" in message and "repo_id=" in message and "audio-dialogues generate" in message
    assert "AUDIO_DIALOGUES_REPO" in message


EMBEDDED_READER = """
    import json, sys
    import numpy as np
    import datasets
    out = {}
    for config in ("music", "comparison"):
        for row in datasets.load_dataset(REPO, config, split="test", revision="v1"):
            audios = row["audios"] if config == "comparison" else [row["audio"]]
            clips = row["clips"] if config == "comparison" else [row["clip"]]
            for clip, audio in zip(clips, audios):
                samples = audio.get_all_samples()
                np.save(f"{clip['ytid']}_{clip['start_s']:g}.npy", samples.data.numpy().mean(axis=0))
                out[f"{clip['ytid']}_{clip['start_s']:g}"] = samples.sample_rate
    out["imported"] = "audio_dialogues" in sys.modules
    print(json.dumps(out))
"""

EMBEDDED_PACKAGE_READER = """
    import json
    import numpy as np
    import datasets
    import audio_dialogues
    sample = audio_dialogues.sample_paths()
    local = datasets.load_dataset("audio_dialogues", "music", split="test", **sample)
    published = datasets.load_dataset("audio_dialogues", "music", split="test", repo_id=REPO, revision="v1",
                                      audio_cache_dir="empty-cache")
    print(json.dumps({"ids": [list(local["id"]), list(published["id"])],
                      "same_audio": all(np.array_equal(x["audio"]["array"], y["audio"]["array"])
                                        for x, y in zip(local, published))}))
"""


@pytest.mark.timeout(240)
def test_embedded_audio_decodes_to_the_source_clips(hub_client: HubServer, tmp_path: Path) -> None:
    repo = "tester/with-audio"
    assert push(repo, "--embed-audio", "--private", "--revision", "v1", "--config", "music",
                "--config", "comparison") == 0
    assert hub_client.repos[repo].private and set(hub_client.repos[repo].branches) == {"main", "v1"}
    assert "README.md" not in hub_client.files(repo, "main")  # the branch, not main, got the version

    got = run_python(f"REPO = {repo!r}\n" + textwrap.dedent(EMBEDDED_READER), hub_client, tmp_path, isolated=True)
    assert got.pop("imported") is False
    resolver = AudioResolver([SAMPLE["audio_dir"]])
    checked = 0
    for config in ("music", "comparison"):
        for record in sample_records(config, "test"):
            for clip in record.clips:
                key = f"{clip.ytid}_{clip.start_s:g}"
                source = resolver.resolve(clip)
                if source is None:
                    assert key not in got or got[key] is None
                    continue
                want, rate = sf.read(source, dtype="float32", always_2d=True)
                decoded = np.load(tmp_path / f"{key}.npy")
                assert got[key] == rate
                np.testing.assert_allclose(decoded, want.mean(axis=1), atol=1e-4)
                checked += 1
    assert checked >= 3

    # the package uses the embedded audio when the user has none
    got = run_python(f"REPO = {repo!r}\n" + textwrap.dedent(EMBEDDED_PACKAGE_READER), hub_client, tmp_path)
    assert got["ids"][0] == got["ids"][1] and got["ids"][0]
    assert got["same_audio"]


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
