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


@pytest.fixture(scope="module")
def ten_seconds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 10 s clip as FLAC and WAV, and copies cut short (their headers still say 10 s)."""
    folder = tmp_path_factory.mktemp("truncated")
    rng = np.random.default_rng(7)
    t = np.arange(160_000) / 16_000
    signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    files = {}
    for fmt in ("flac", "wav"):
        whole = folder / f"whole.{fmt}"
        sf.write(whole, signal, 16_000, subtype="PCM_16")
        files[fmt] = whole
    for cut in (20_000, 50_001, 150_000):  # small cuts read silently short, others break off mid-stream
        files[f"flac_{cut}"] = folder / f"cut{cut}.flac"
        files[f"flac_{cut}"].write_bytes(files["flac"].read_bytes()[:cut])
    tone = folder / "tone.flac"  # a pure tone compresses well: a cut here makes libsndfile lose sync part-way
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16_000, subtype="PCM_16")
    files["tone_cut"] = folder / "tone_cut.flac"
    files["tone_cut"].write_bytes(tone.read_bytes()[:20_000])
    files["wav_cut"] = folder / "cut.wav"
    files["wav_cut"].write_bytes(files["wav"].read_bytes()[:100_000])
    files["wav_piped"] = folder / "piped.wav"  # written to a pipe: the data size is a placeholder, not a promise
    with open(files["wav_piped"], "wb") as out:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(files["wav"]), "-f", "wav", "pipe:1"],
                       stdout=out, check=True)
    return files


@pytest.mark.parametrize("name", ["flac_20000", "flac_50001", "flac_150000", "tone_cut", "wav_cut"])
def test_truncated_audio_is_never_returned_short(ten_seconds: dict[str, Path], name: str) -> None:
    """The fast decoder refuses a file that holds less than its header says, naming the file and both lengths."""
    from audio_dialogues.dataset.decoding import AudioDecodeError

    path = ten_seconds[name]
    pattern = rf"{path.name}: truncated: its header promises 10.000 s of audio, the file holds \d\.\d{{3}} s"
    with pytest.raises(AudioDecodeError, match=pattern):
        decode_file(str(path), 16_000)
    with pytest.raises(AudioDecodeError, match=r"<bytes>: truncated: its header promises 10.000 s"):
        decode_file(path.read_bytes(), None)
    with pytest.raises(AudioDecodeError, match=pattern):
        SoundfileAudio().decode_example({"path": str(path), "bytes": None})


def test_whole_files_still_decode_in_full(ten_seconds: dict[str, Path]) -> None:
    for name in ("flac", "wav", "wav_piped"):
        assert len(decode_file(str(ten_seconds[name]), None)[0]) == 160_000
        assert len(decode_file(ten_seconds[name].read_bytes(), 8_000)[0]) == 80_000


@pytest.mark.parametrize("name", ["flac_20000", "flac_50001", "flac_150000", "tone_cut", "wav_cut"])
def test_torchcodec_refuses_truncated_audio_too(ten_seconds: dict[str, Path], name: str,
                                                torchcodec: object) -> None:
    from audio_dialogues.dataset.decoding import AudioDecodeError, TorchcodecAudio

    feature = TorchcodecAudio(num_channels=1)
    with pytest.raises(AudioDecodeError, match=rf"{ten_seconds[name].name}: (truncated|torchcodec could not)"):
        feature.decode_example({"path": str(ten_seconds[name]), "bytes": None})["array"]
    for whole in ("flac", "wav", "wav_piped"):
        assert len(feature.decode_example({"path": str(ten_seconds[whole]), "bytes": None})["array"]) == 160_000


@pytest.fixture(scope="module")
def lossy(ten_seconds: dict[str, Path]) -> dict[str, Path]:
    """An MP3 with a few KB of ID3 tag and no Xing header (libsndfile estimates its length too long), and files
    that hold no audio: a Vorbis OGG cut before its first audio page and a WAV with a header only."""
    folder = ten_seconds["wav"].parent
    files = {"mp3": folder / "tagged.mp3"}
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(ten_seconds["wav"]),
                    "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", "-id3v2_version", "3",
                    "-metadata", "title=tagged", "-metadata", "comment=" + "a long comment " * 200, str(files["mp3"])],
                   check=True)
    tone = folder / "tone.ogg"  # a pure tone: its first audio page lies past the cut, libsndfile finds no length
    t = np.arange(160_000) / 16_000
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16_000, format="OGG", subtype="VORBIS")
    files["ogg_empty"] = folder / "tone_half.ogg"
    files["ogg_empty"].write_bytes(tone.read_bytes()[: tone.stat().st_size // 2])
    noisy = folder / "noisy.ogg"  # cut in half: libsndfile and ffmpeg read its length from the last whole page
    sf.write(noisy, sf.read(ten_seconds["flac"], dtype="float32")[0], 16_000, format="OGG", subtype="VORBIS")
    files["ogg"] = noisy
    files["ogg_cut"] = folder / "noisy_half.ogg"
    files["ogg_cut"].write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    files["wav_empty"] = folder / "header_only.wav"
    sf.write(files["wav_empty"], np.zeros(0, dtype=np.float32), 16_000, subtype="PCM_16")
    return files


def test_mp3_with_an_id3_tag_decodes_in_full(lossy: dict[str, Path], ten_seconds: dict[str, Path]) -> None:
    """libsndfile's frame count of a CBR MP3 without a Xing header is an estimate: it is not held against the decode."""
    from audio_dialogues.audio.headers import audio_length

    path = lossy["mp3"]
    info = sf.info(str(path))
    assert info.frames / info.samplerate > 10.1  # the estimate the old check refused the file by
    assert audio_length(str(path)) == pytest.approx(info.frames / info.samplerate)  # accepted at prepare
    reference = decode_file(str(ten_seconds["wav"]), None)[0]
    array, rate = decode_file(str(path), None)
    assert rate == 16_000 and abs(len(array) - 160_000) < 0.1 * 16_000
    window = reference[16_000:48_000]  # the same audio, behind the encoder's delay (a few hundred samples)
    assert max(np.corrcoef(array[16_000 + lag : 48_000 + lag], window)[0, 1] for lag in range(0, 3000, 1)) > 0.95
    assert len(decode_file(path.read_bytes(), 8_000)[0]) == pytest.approx(len(array) / 2, abs=2)
    assert len(SoundfileAudio().decode_example({"path": str(path), "bytes": None})["array"]) == len(array)


@pytest.mark.parametrize("name", ["ogg_empty", "wav_empty"])
def test_no_audio_from_a_non_empty_file_is_an_error(lossy: dict[str, Path], name: str) -> None:
    """A decode that yields no samples (libsndfile and ffmpeg alike) raises, naming the file, instead of []."""
    from audio_dialogues.dataset.decoding import AudioDecodeError

    path = lossy[name]
    with pytest.raises(AudioDecodeError, match=rf"{path.name}: no audio"):
        decode_file(str(path), 16_000)
    with pytest.raises(AudioDecodeError, match=r"<bytes>: no audio"):
        decode_file(path.read_bytes(), None)


@pytest.mark.parametrize("name", ["ogg_empty", "wav_empty"])
def test_torchcodec_refuses_no_audio_too(lossy: dict[str, Path], name: str, torchcodec: object) -> None:
    from audio_dialogues.dataset.decoding import AudioDecodeError, TorchcodecAudio

    with pytest.raises(AudioDecodeError, match=rf"{lossy[name].name}: (no audio|torchcodec could not)"):
        TorchcodecAudio(num_channels=1).decode_example({"path": str(lossy[name]), "bytes": None})["array"]


def test_torchcodec_decodes_the_tagged_mp3_in_full(lossy: dict[str, Path], torchcodec: object) -> None:
    from audio_dialogues.dataset.decoding import TorchcodecAudio

    array = TorchcodecAudio(num_channels=1).decode_example({"path": str(lossy["mp3"]), "bytes": None})["array"]
    assert abs(len(array) - 160_000) < 0.1 * 16_000


def test_ogg_cut_short_is_caught_at_prepare_and_by_both_decoders(lossy: dict[str, Path], torchcodec: object) -> None:
    """An Ogg file without its last page decodes short without an error in libsndfile and ffmpeg; it is refused."""
    from audio_dialogues.audio.headers import UnusableAudioError, audio_length
    from audio_dialogues.dataset.decoding import AudioDecodeError, TorchcodecAudio

    path = lossy["ogg_cut"]
    assert 0 < sf.info(str(path)).frames < 100_000  # what libsndfile alone would return, short
    pattern = rf"{path.name}: truncated: its Ogg stream breaks off before its last page"
    with pytest.raises(UnusableAudioError, match=pattern):
        audio_length(str(path))
    with pytest.raises(AudioDecodeError, match=pattern + r", the file holds \d\.\d{3} s"):
        decode_file(str(path), 16_000)
    with pytest.raises(AudioDecodeError, match=r"<bytes>: truncated: its Ogg stream"):
        decode_file(path.read_bytes(), None)
    with pytest.raises(AudioDecodeError, match=pattern):
        TorchcodecAudio(num_channels=1).decode_example({"path": str(path), "bytes": None})["array"]
    whole = lossy["ogg"]
    assert audio_length(str(whole)) == pytest.approx(10.0, abs=0.01)
    assert abs(len(decode_file(str(whole), None)[0]) - 160_000) < 100
    assert abs(len(TorchcodecAudio(num_channels=1).decode_example({"path": str(whole), "bytes": None})["array"])
               - 160_000) < 100


def test_ogg_end_check_reads_pages(lossy: dict[str, Path]) -> None:
    """Cut inside a page or at a page boundary: cut short. Whole, or followed by bytes that are no page: not."""
    from audio_dialogues.audio.headers import OGG_TAIL_BYTES, ogg_cut_short

    data = lossy["ogg"].read_bytes()
    last_page = data.rfind(b"OggS")
    assert not ogg_cut_short(data[-OGG_TAIL_BYTES:])
    assert not ogg_cut_short((data + b"TAG" + bytes(125))[-OGG_TAIL_BYTES:])  # an appended tag leaves it open
    assert ogg_cut_short(data[:last_page][-OGG_TAIL_BYTES:])  # ends after a whole page that does not end the stream
    assert ogg_cut_short(data[: last_page + 40][-OGG_TAIL_BYTES:])
