"""The fast decode path on its own: formats libsndfile cannot read, bytes, arrays, resampling."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_dialogues.dataset.decoding import SoundfileAudio, decode_file
from tests.media_server import chirp


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dec") / "x.wav"
    sf.write(path, chirp(3.0, 22_050, channels=2), 22_050, subtype="PCM_16")
    return path


def test_stereo_is_downmixed_and_resampled(stereo_wav: Path) -> None:
    data, _ = sf.read(stereo_wav, dtype="float32")
    array, rate = decode_file(str(stereo_wav), 16_000)
    assert rate == 16_000 and array.dtype == np.float32 and array.shape == (48_000,)
    native, native_rate = decode_file(str(stereo_wav), None)
    assert native_rate == 22_050
    np.testing.assert_allclose(native, data.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("ext,codec", [(".m4a", "aac"), (".webm", "libopus")])
def test_containers_libsndfile_cannot_read_go_through_ffmpeg(stereo_wav: Path, ext: str, codec: str) -> None:
    encoded = stereo_wav.with_suffix(ext)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(stereo_wav), "-c:a", codec,
                    "-b:a", "128k", str(encoded)], check=True)
    reference, _ = decode_file(str(stereo_wav), 16_000)
    array, rate = decode_file(str(encoded), 16_000)
    assert rate == 16_000 and array.dtype == np.float32
    assert abs(len(array) - len(reference)) < 0.05 * 16_000  # codec padding only
    n = min(len(array), len(reference))
    assert np.corrcoef(array[:n], reference[:n])[0, 1] > 0.95
    from_bytes, _ = decode_file(encoded.read_bytes(), 16_000)  # bytes of a container go to ffmpeg as well
    np.testing.assert_allclose(from_bytes[:n], array[:n], atol=1e-4)


def test_undecodable_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.m4a"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(RuntimeError, match="ffmpeg could not decode .*broken.m4a"):
        decode_file(str(bad), 16_000)


def test_feature_encodes_without_torch_and_round_trips(stereo_wav: Path) -> None:
    feature = SoundfileAudio(sampling_rate=None)
    array = chirp(1.0, 8_000)
    stored = feature.encode_example({"array": array, "sampling_rate": 8_000})
    assert stored["path"] is None and stored["bytes"][:4] == b"RIFF"
    decoded = feature.decode_example(stored)
    np.testing.assert_allclose(decoded["array"], array, atol=1e-6)
    assert feature.encode_example(str(stereo_wav)) == {"bytes": None, "path": str(stereo_wav)}
    assert feature.decode_example({"path": str(stereo_wav), "bytes": None})["sampling_rate"] == 22_050
    with pytest.raises(RuntimeError, match="Decoding is disabled"):
        SoundfileAudio(decode=False).decode_example({"path": str(stereo_wav), "bytes": None})


def _plain(source: str | bytes, rate: int) -> np.ndarray:
    """What one writes by hand with the same two libraries: the samples the fast path must reproduce exactly."""
    import io

    import soxr

    data, native = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32",
                           always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return soxr.resample(mono, native, rate, quality="HQ") if rate != native else mono


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "PCM_24"),
                                         ("FLAC", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
                                         ("OGG", "VORBIS")])
@pytest.mark.parametrize("frames", [1, 7, 22_050 * 3 + 11])
def test_integer_reads_give_the_plain_samples(tmp_path: Path, fmt: str, subtype: str, frames: int) -> None:
    """PCM read at its own width and scaled by numpy: bit-identical to libsndfile's float reads, resampled or not."""
    rng = np.random.default_rng(frames)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, np.clip(rng.standard_normal((frames, 2)) * 0.4, -1, 1), 22_050, format=fmt, subtype=subtype)
    for rate in (16_000, 48_000, 22_050):
        array, got_rate = decode_file(str(path), rate)
        assert got_rate == rate and array.dtype == np.float32 and array.flags.c_contiguous
        np.testing.assert_array_equal(array, _plain(str(path), rate))
    np.testing.assert_array_equal(decode_file(path.read_bytes(), 16_000)[0], _plain(path.read_bytes(), 16_000))
