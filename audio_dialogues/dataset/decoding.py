"""Decoding audio features: a fast soundfile + soxr path and the standard datasets/torchcodec one.

datasets >= 4 decodes :class:`datasets.Audio` with torchcodec, which needs torch and FFmpeg's shared
libraries and, on the WAV/FLAC clips this dataset is made of, runs 2.8-3.3x slower than libsndfile
plus soxr resampling (``bench/decode.py``; docs/performance.md). :class:`SoundfileAudio` is an ``Audio``
feature that decodes that way instead.
Both paths return ``{"array": float32 1-D (mono), "sampling_rate": int}`` (torchcodec's decoder object
answers the same two keys), equal in length and correlated >= 0.99.

Portability: both features *serialise as the standard* ``Audio`` type (their ``_type`` is ``"Audio"``
and they add no field), so whatever is written from them (``save_to_disk``, ``push_to_hub``, the
prepared cache) opens with plain ``datasets`` and no trace of this package. This package puts its own
decoder back when it reads data (see the builder's ``_load_info``).
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import soxr
from datasets.features.features import register_feature

from ..audio.ffmpeg import FFMPEG_ONLY_EXTENSIONS
from ..audio.headers import (
    WINDOW_TOLERANCE_S,
    UnusableAudioError,
    ends_of,
    ogg_cut_short,
    ogg_truncation,
    read_ends,
    truncation,
    wav_length,
)
from ..errors import AudioDialoguesError, UsageError
from ..files import open_regular

DECODERS = ("soundfile", "torchcodec", "none")
#: soundfile (libsndfile) cannot open these containers; they go through an ffmpeg process instead.
_FFMPEG_ONLY = tuple(f".{ext}" for ext in FFMPEG_ONLY_EXTENSIONS)
_DATASETS_MAJOR = int(datasets.__version__.split(".")[0])


#: torchcodec's wheels declare no torch dependency, so pip cannot see which torch a release needs. Tried here
#: (CPU, Python 3.11): torchcodec 0.13 loads with torch 2.13 and 2.14; 0.14 to 0.17 with torch 2.14, not with 2.13.
_CODEC_NEEDING_NEW_TORCH, _NEW_TORCH, _NEWEST_CODEC_TRIED = (0, 14), (2, 14), (0, 17)


class DecoderUnavailableError(AudioDialoguesError, ImportError):
    """The decoder asked for cannot run with what is installed (datasets < 4, or a torchcodec that does not load
    with the installed torch); the message names the fix."""


def audio_feature(decoder: str, sampling_rate: int | None) -> datasets.Audio:
    """The ``Audio`` feature for a decoder name: ``soundfile`` (fast), ``torchcodec`` (datasets' own), ``none``."""
    if decoder == "soundfile":
        return SoundfileAudio(sampling_rate=sampling_rate)
    if decoder == "torchcodec":
        if _DATASETS_MAJOR < 4:
            # datasets 3.x's Audio decodes with soundfile and librosa (float64): not what was asked for.
            raise DecoderUnavailableError(
                f"decoder='torchcodec' needs datasets >= 4, whose Audio feature decodes with torchcodec; "
                f"datasets {datasets.__version__} decodes with soundfile and librosa instead (float64 samples). "
                'Fix: pip install "datasets>=4" "audio-dialogues[decode]", or use decoder=\'soundfile\' '
                "(the default: float32 mono on every datasets version).")
        check_torchcodec()
        return TorchcodecAudio(sampling_rate=sampling_rate, num_channels=1)
    if decoder == "none":
        return datasets.Audio(sampling_rate=sampling_rate, decode=False)
    raise UsageError(f"unknown decoder {decoder!r}; expected one of {', '.join(DECODERS)}")


def _release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of an installed version such as ``2.13.0+cpu``; None when not installed or unreadable."""
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(version).release if version else None
    except InvalidVersion:
        return None
    if release is None:
        return None
    major, minor = (release + (0,))[:2]
    return major, minor


def torchcodec_fix(torch_version: str | None, torchcodec_version: str | None) -> str:
    """What to install so that torchcodec loads with the installed torch, keeping that torch.

    pip cannot work this out: torchcodec's wheels declare no torch dependency, so ``pip install
    "audio-dialogues[decode]"`` beside torch 2.13 picks the newest torchcodec, which needs torch >= 2.14.
    """
    torch, codec = _release(torch_version), _release(torchcodec_version)
    if torch is None:
        return 'pip install "audio-dialogues[decode]" (torch >= 2.13 with torchcodec >= 0.13)'
    loads_together = (f"torch {torch_version} and torchcodec {torchcodec_version} load together where FFmpeg's "
                      "shared libraries are installed, so those are the likely cause")
    if torch < _NEW_TORCH:
        if codec is not None and codec < _CODEC_NEEDING_NEW_TORCH:
            return loads_together
        why = (f"torchcodec {torchcodec_version} needs torch >= 2.14 (its wheel does not declare it, so pip "
               "installed it anyway); " if codec is not None else "torchcodec >= 0.14 needs torch >= 2.14; ")
        return f'{why}keep torch {torch_version} with pip install "torchcodec==0.13.*", or pip install "torch>=2.14"'
    if codec is None:
        return f'pip install "torchcodec>=0.16" (loads with torch {torch_version}, which it keeps)'
    if codec <= _NEWEST_CODEC_TRIED:
        return loads_together
    return (f"torchcodec {torchcodec_version} is newer than the releases tried with this package (up to 0.17); "
            f'the release made for torch {torch_version}: pip install "torchcodec==0.{torch[1]}.*"')


def check_torchcodec() -> None:
    """Fail now, naming the fix, when torchcodec cannot load (e.g. a release that needs a newer torch).

    Otherwise the failure would surface on the first decoded example, deep inside datasets, as a
    missing shared library.
    """
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any failure to load is the same problem for the user
        from importlib.metadata import PackageNotFoundError, version

        installed: dict[str, str | None] = {}
        for name in ("torch", "torchcodec"):
            try:
                installed[name] = version(name)
            except PackageNotFoundError:
                installed[name] = None
        versions = ", ".join(f"{name} {v or 'not installed'}" for name, v in installed.items())
        raise DecoderUnavailableError(
            f"decoder='torchcodec' needs torchcodec loadable with the installed torch ({versions}): "
            f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}. "
            f"Fix: {torchcodec_fix(installed['torch'], installed['torchcodec'])}. "
            "torchcodec needs FFmpeg's shared libraries too (e.g. apt-get install ffmpeg). "
            "Or use decoder='soundfile'."
        ) from err


def _decode_with_ffmpeg(source: str | bytes, sampling_rate: int | None) -> tuple[np.ndarray, int]:
    """Let ffmpeg turn any container into mono float WAV, then read that (its header carries the rate)."""
    name = source if isinstance(source, str) else "<bytes>"
    rate = ["-ar", str(sampling_rate)] if sampling_rate else []
    from ..audio.ffmpeg import find_ffmpeg  # PATH first, then the binary the imageio-ffmpeg wheel ships

    cmd = [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error",
           "-i", source if isinstance(source, str) else "pipe:0",
           "-map", "0:a:0", "-ac", "1", *rate, "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
    out = subprocess.run(cmd, input=source if isinstance(source, bytes) else None, capture_output=True)
    if out.returncode != 0 or not out.stdout:
        raise AudioDecodeError(f"ffmpeg could not decode {name}: {out.stderr.decode(errors='replace').strip()}")
    array, native = sf.read(io.BytesIO(out.stdout), dtype="float32")
    return np.ascontiguousarray(array), int(native)


#: Integer PCM read at its own width and scaled by numpy: the same float32 samples libsndfile would give
#: (a power-of-two scale of at most 24 significant bits is exact) for about a third of its conversion CPU.
_EXACT_PCM = {"PCM_16": (np.int16, np.float32(2.0**-15)), "PCM_24": (np.int32, np.float32(2.0**-31))}


class AudioDecodeError(AudioDialoguesError, RuntimeError):
    """Audio that cannot be decoded, or decodes to less than its header promises; the message names the file."""


#: libsndfile subtypes (with FLAC) whose frame count the header states exactly. For MP3 libsndfile estimates it
#: from the file size (ID3 tags and a missing Xing header make it wrong), for OGG it reads the last page.
_PCM_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"})


def _readable_frames(source: str | bytes) -> int:
    """How many frames decode before a damaged file's stream breaks off (for the message; read in blocks)."""
    frames = 0
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as f:
            for block in f.blocks(blocksize=1 << 12, dtype="int16"):
                frames += len(block)
    except sf.LibsndfileError:
        pass
    return frames


def _second_opinion(source: str | bytes, name: str, promised: int | None, rate: int,
                    why: str) -> tuple[np.ndarray, int]:
    """libsndfile gave up part-way or found no audio: ffmpeg's decode if that holds the audio, else the error.

    ffmpeg gets past some damage libsndfile stops at (a bad frame inside an MP3). Where the header's frame
    count is exact (``promised``), ffmpeg's decode must hold all of it: a file cut short, ffmpeg cannot
    complete either. Where it is not, any audio ffmpeg finds is all that can be known.
    """
    try:
        array, native = _decode_with_ffmpeg(source, None)
        ffmpeg_says = f"ffmpeg decoded {len(array) / native:.3f} s"
    except RuntimeError as err:
        array, native = np.zeros(0, dtype=np.float32), rate
        ffmpeg_says = str(err).replace(f"ffmpeg could not decode {name}: ", "ffmpeg: ")
    if len(array) and native == rate and (promised is None or len(array) >= promised - WINDOW_TOLERANCE_S * rate):
        return array[:, None], native
    if promised is None:
        raise AudioDecodeError(f"{name}: {why}; {ffmpeg_says}")
    readable = _readable_frames(source)
    raise AudioDecodeError(f"{truncation(name, promised / rate, readable / rate)} ({why})")


def _read_open(f: sf.SoundFile, source: str | bytes, name: str,
               ends: Callable[[], tuple[bytes, int, bytes]]) -> tuple[np.ndarray, int]:
    """All frames of an open file; ``ends()``: its :func:`..audio.headers.ends_of`, for WAV and Ogg checks."""
    exact_length = f.format == "FLAC" or f.subtype in _PCM_SUBTYPES
    if f.format in ("WAV", "WAVEX") and (wav := wav_length(name, *ends()[:2])) is not None and wav[1]:
        raise AudioDecodeError(wav[1])
    exact = _EXACT_PCM.get(f.subtype)
    try:
        data = f.read(dtype=exact[0] if exact else "float32", always_2d=True)
    except sf.LibsndfileError as err:
        data, exact = _second_opinion(source, name, f.frames if exact_length else None, f.samplerate,
                                      f"decoding broke off: {err}")[0], None
    else:
        if exact_length and len(data) < f.frames:
            raise AudioDecodeError(truncation(name, f.frames / f.samplerate, len(data) / f.samplerate))
        if not len(data):
            if exact_length:
                raise AudioDecodeError(f"{name}: no audio to decode (its header promises 0 samples)")
            # e.g. a Vorbis file cut short early: libsndfile finds neither its length nor any audio
            data, exact = _second_opinion(source, name, None, f.samplerate,
                                          "no audio could be decoded (libsndfile read none)")[0], None
    if f.format == "OGG" and ogg_cut_short(ends()[2]):
        raise AudioDecodeError(ogg_truncation(name, len(data) / f.samplerate))
    if exact is None:
        return data, f.samplerate
    data = data.astype(np.float32)
    data *= exact[1]  # in place: one buffer of a clip's size fewer to allocate and fault in
    return data, f.samplerate


def _read(source: str | bytes) -> tuple[np.ndarray, int] | None:
    """All frames of a file libsndfile reads, as float32 ``(frames, channels)``; None if libsndfile cannot open it.

    Raises :class:`AudioDecodeError` when fewer frames are read than an exact header (FLAC, PCM) promises
    (a truncated FLAC still says its full length), an Ogg stream lacks its last page, or the stream breaks
    off, so short audio is never returned where it can be told. A path is opened once: libsndfile reads
    from the same descriptor the WAV header, the Ogg tail and the file size come from.
    """
    if isinstance(source, bytes):
        try:
            f = sf.SoundFile(io.BytesIO(source))
        except sf.LibsndfileError:
            return None
        with f:
            return _read_open(f, source, "<bytes>", lambda: ends_of(source))
    fd = open_regular(source, AudioDecodeError)
    try:
        try:
            f = sf.SoundFile(fd, closefd=False)
        except sf.LibsndfileError:
            return None
        with f:
            return _read_open(f, source, source, lambda: ends_of(fd))
    finally:
        os.close(fd)


def decode_file(source: str | bytes, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a path or encoded bytes to mono float32 at ``sampling_rate`` (native when None).

    Never returns less audio than an exact header (FLAC, PCM WAV) promises, nor no audio at all:
    :class:`AudioDecodeError` names the file instead. (MP3, OGG and the containers decoded by ffmpeg
    carry no exact promise; their length is not checked.)
    """
    name = source if isinstance(source, str) else "<bytes>"
    if isinstance(source, str) and source.lower().endswith(_FFMPEG_ONLY):
        read = None
    else:
        read = _read(source)
    if read is None:
        array, rate = _decode_with_ffmpeg(source, sampling_rate)
        if not len(array):
            raise AudioDecodeError(f"{name}: no audio could be decoded (ffmpeg decoded 0 samples)")
        return array, rate
    data, rate = read
    array = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sampling_rate is not None and sampling_rate != rate:
        array = soxr.resample(array, rate, sampling_rate, quality="HQ")
        rate = sampling_rate
    return np.ascontiguousarray(array, dtype=np.float32), int(rate)


def wav_bytes(path: str, sampling_rate: int | None = None) -> bytes:
    """The clip at ``path`` as a 16-bit mono WAV file in memory, at ``sampling_rate`` (native when None).

    What a chat endpoint's ``input_audio`` part carries (OpenAI takes WAV and MP3, nothing else): any clip
    this package decodes (FLAC, Ogg, m4a ...) is decoded by :func:`decode_file` and written again, so the
    ``openai-messages`` export and ``predict`` send the same bytes. Raises :class:`AudioDecodeError`.
    """
    samples, rate = decode_file(path, sampling_rate)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class SoundfileAudio(datasets.Audio):
    """``datasets.Audio`` decoded with soundfile + soxr (ffmpeg for containers libsndfile cannot read).

    Serialised as the standard ``Audio`` (same ``_type``, same fields), so nothing written from it
    depends on this package.
    """

    _type: str = field(default="Audio", init=False, repr=False)

    def encode_example(self, value: Any) -> dict:
        """Store a path, bytes or an array without torch (datasets >= 4's ``Audio`` imports torchcodec here)."""
        if isinstance(value, (str, os.PathLike)):
            return {"bytes": None, "path": os.fspath(value)}
        if isinstance(value, (bytes, bytearray)):
            return {"bytes": bytes(value), "path": None}
        if isinstance(value, dict):
            if "array" in value:
                buffer = io.BytesIO()
                sf.write(buffer, np.asarray(value["array"], dtype=np.float32), value["sampling_rate"], format="WAV",
                         subtype="FLOAT")
                return {"bytes": buffer.getvalue(), "path": None}
            if value.get("bytes") is not None or value.get("path") is not None:
                return {"bytes": value.get("bytes"), "path": value.get("path")}
        return super().encode_example(value)

    def decode_example(self, value: dict, token_per_repo_id: Any = None) -> dict:
        if not self.decode:
            raise RuntimeError("Decoding is disabled for this feature. Please use SoundfileAudio(decode=True).")
        path, data = value.get("path"), value.get("bytes")
        source = data if data is not None else path
        if source is None:
            raise ValueError(f"An audio sample needs 'path' or 'bytes'; got {value}")
        if data is None and "://" in source:
            from datasets.utils.file_utils import xopen

            with xopen(source, "rb") as f:
                data = source = f.read()
        try:
            array, rate = decode_file(source, self.sampling_rate)
        except AudioDecodeError as err:
            if data is None:  # the message already names the path
                raise
            raise AudioDecodeError(f"cannot decode audio {path or '<bytes>'}: {err}") from err
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioDecodeError(f"cannot decode audio {path or '<bytes>'}: {err}") from err
        return {"path": path, "array": array, "sampling_rate": rate}


@dataclass
class TorchcodecAudio(datasets.Audio):
    """datasets' own ``Audio`` (torchcodec), whose decoded object gives the same samples on every read.

    torchcodec 0.13 to 0.15 keep resampler state inside a decoder between calls, so reading ``["array"]``
    of one datasets example twice returned shifted samples (0.16 and later do not). Here the samples are
    decoded once per example and kept, whatever the release. Serialised as the standard ``Audio``.
    """

    _type: str = field(default="Audio", init=False, repr=False)

    def decode_example(self, value: dict, token_per_repo_id: Any = None) -> Any:
        try:
            decoder = super().decode_example(value, token_per_repo_id=token_per_repo_id)
        except RuntimeError as err:
            if not self.decode or not isinstance(value, dict):
                raise
            first = (str(err).strip().splitlines() or [""])[-1]
            name = value.get("path") or "<bytes>"
            raise AudioDecodeError(f"{name}: torchcodec could not open it ({first})") from err
        decoder.__class__ = _stable_decoder_class()
        decoder._audio_dialogues_feature = self
        return decoder


def _check_length(metadata: Any, name: str, samples: int, rate: int, encoded: dict) -> None:
    """Refuse audio that decoded to nothing, or lossless audio that decoded to less than its header promises.

    Only FLAC and PCM are held to their header: for them its length is exact, where for lossy formats
    ffmpeg may estimate it. ffmpeg measures a WAV file by its size, so a WAV's own ``data`` header is read
    too, and an Ogg file's last page, which a file cut short lacks (one more open of a PCM or Ogg file:
    torchcodec reads through ffmpeg, which shares no descriptor).
    """
    if not samples:
        raise AudioDecodeError(f"{name}: no audio could be decoded (torchcodec decoded 0 samples)")
    promised, got_s = metadata.duration_seconds_from_header, samples / rate
    codec = metadata.codec or ""
    if promised and (codec == "flac" or codec.startswith("pcm_")) and got_s < promised - WINDOW_TOLERANCE_S:
        raise AudioDecodeError(truncation(name, promised, got_s))
    source = encoded.get("bytes") or encoded.get("path")
    if not (codec.startswith("pcm_") or codec in ("vorbis", "opus")) or not source:
        return
    if isinstance(source, bytes):
        head, size, tail = ends_of(source)
    else:
        try:
            head, size, tail = read_ends(source)
        except (OSError, UnusableAudioError):  # a remote path: torchcodec read it through a file object
            return
    wav = wav_length(name, head, size)
    if wav is not None and wav[1]:
        raise AudioDecodeError(wav[1])
    if tail and ogg_cut_short(tail):
        raise AudioDecodeError(ogg_truncation(name, got_s))


def _unpickle_decoder(state: dict) -> Any:
    """A pickled :class:`StableAudioDecoder` made again, unopened: its source opens on first need."""
    cls = _stable_decoder_class()
    decoder = cls.__new__(cls)
    decoder.__dict__.update(state)
    return decoder


@functools.cache
def _stable_decoder_class() -> Any:
    """The class, made on first use: it subclasses datasets' ``AudioDecoder``, whose import loads torchcodec.

    It is published as this module's ``StableAudioDecoder`` (see :func:`__getattr__`), so pickle and
    ``repr`` find it by name.
    """
    from datasets.features._torchcodec import AudioDecoder

    class StableAudioDecoder(AudioDecoder):
        """datasets' ``AudioDecoder`` whose ``["array"]`` and ``["sampling_rate"]`` come from one decode.

        Picklable (DataLoader workers send examples to the main process): torchcodec's native decoder state
        cannot cross processes (unpickled, it crashes the interpreter), so a pickle carries the encoded source
        (a path, or bytes unless decoded samples stand in), the feature's options, the stream's metadata and
        the samples if already decoded; the native decoder is opened again only when needed.
        """

        def __getitem__(self, key: str) -> Any:
            if key in ("array", "sampling_rate"):
                cached = self.__dict__.get("_audio_dialogues_samples")
                if cached is None:
                    name = getattr(self.metadata, "path", None) or "<bytes>"
                    try:
                        samples = self.get_all_samples()
                    except RuntimeError as err:
                        first = (str(err).strip().splitlines() or [""])[-1]
                        raise AudioDecodeError(f"{name}: torchcodec could not decode it ({first})") from err
                    data = samples.data.cpu().numpy()
                    mixed = data.ndim > 1 and data.shape[0] > 1
                    array = data.mean(axis=0, dtype=np.float32) if mixed else data.reshape(-1)
                    cached = (np.ascontiguousarray(array, dtype=np.float32), int(samples.sample_rate))
                    _check_length(self.metadata, name, len(array), cached[1], self._hf_encoded)
                    self.__dict__["_audio_dialogues_samples"] = cached
                return cached[0] if key == "array" else cached[1]
            return super().__getitem__(key)

        def __getattr__(self, name: str) -> Any:
            """torchcodec's native decoder, missing after unpickling, opened on first use."""
            if name != "_decoder" or "_hf_encoded" not in self.__dict__:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            state = self.__dict__
            if state.get("_audio_dialogues_from_samples"):  # the encoded bytes stayed behind: the samples stand in
                from torchcodec.decoders import AudioDecoder as TorchcodecDecoder

                array, rate = state["_audio_dialogues_samples"]
                buffer = io.BytesIO()
                sf.write(buffer, array, rate, format="WAV", subtype="FLOAT")  # float32 WAV: the same samples back
                native = TorchcodecDecoder(buffer.getvalue(), sample_rate=rate, num_channels=1)._decoder
            else:
                native = state["_audio_dialogues_feature"].decode_example(dict(state["_hf_encoded"]))._decoder
            state["_decoder"] = native
            return native

        def __reduce__(self) -> tuple:
            """Everything but torchcodec's native decoder; the encoded bytes too, unless the samples can stand in.

            The receiving process opens nothing until something beyond ``["array"]``/``["sampling_rate"]``
            of a decoded example is asked for (see :meth:`__getattr__`).
            """
            state = {key: value for key, value in self.__dict__.items() if key != "_decoder"}
            feature = state.setdefault("_audio_dialogues_feature", TorchcodecAudio(num_channels=1))
            encoded = state["_hf_encoded"]
            if (state.get("_audio_dialogues_samples") is not None and encoded.get("bytes") is not None
                    and feature.num_channels == 1):  # mono samples are exactly what the decoder would give
                state["_hf_encoded"] = {**encoded, "bytes": None}
                state["_audio_dialogues_from_samples"] = True
            return _unpickle_decoder, (state,)

    StableAudioDecoder.__module__ = __name__
    StableAudioDecoder.__qualname__ = "StableAudioDecoder"
    return StableAudioDecoder


def __getattr__(name: str) -> Any:
    """``StableAudioDecoder`` on first access (importing torchcodec then), like any module-level class."""
    if name == "StableAudioDecoder":
        return _stable_decoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


with warnings.catch_warnings():  # register_feature is flagged experimental; its behaviour is what we test
    warnings.simplefilter("ignore")
    register_feature(SoundfileAudio, "SoundfileAudio")
