"""Audio file headers: how long a WAV, FLAC or Ogg file says it is (ffmpeg for the rest), and whether it was cut short.

Shared by the resolver, which checks a local file before using it, and by both decoders.
"""

from __future__ import annotations

import os
import subprocess

from ..errors import AudioDialoguesError
from ..files import open_regular
from .ffmpeg import FFMPEG_ONLY_EXTENSIONS, find_ffmpeg, header_duration

#: How much of a window a file may lack and still give the clip: the same allowance a fetched clip gets.
WINDOW_TOLERANCE_S = 0.05
HEADER_BYTES = 4096


class UnusableAudioError(AudioDialoguesError):
    """A local file that exists but cannot serve as the clip: unreadable, empty, or not holding its window.

    ``reason`` is the short form counted in reports; the message names the file and what is wrong.
    """

    def __init__(self, message: str, reason: str = "undecodable audio") -> None:
        super().__init__(message)
        self.reason = reason


#: ``data`` chunk sizes that a writer to a pipe leaves when it cannot seek back: no promise of a length.
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def _wav_data(head: bytes, size: int) -> tuple[int, int, int, int] | None:
    """``(bytes promised, bytes present, block align, rate)`` of a RIFF/WAVE file's ``data`` chunk.

    From the ``fmt `` and ``data`` chunk headers in ``head`` and the file's ``size`` (None: not found in
    ``head``). A placeholder size promises nothing.
    """
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, rate, block_align = 12, 0, 0
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 24 <= len(head):
            rate = int.from_bytes(head[pos + 12 : pos + 16], "little")
            block_align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            if not rate or not block_align:
                return None
            present = max(0, size - pos - 8)
            return (present if length in _WAV_UNKNOWN_SIZES else length), present, block_align, rate
        pos += 8 + length + (length & 1)
    return None


def wav_length(name: str, head: bytes, size: int) -> tuple[float, str | None] | None:
    """Seconds a RIFF/WAVE file's ``data`` header promises, and why the file is truncated (None: it is whole).

    ``head``: the file's first :data:`HEADER_BYTES`; ``size``: its size. None: no WAV header in ``head``.
    A file holding fewer bytes than its ``data`` header promises was cut short (a bad copy, a full disk);
    libsndfile then quietly reports only what is there, so only this size arithmetic can tell.
    """
    data = _wav_data(head, size)
    if data is None:
        return None
    promised, present, block_align, rate = data
    promised_s = promised // block_align / rate
    return promised_s, (truncation(name, promised_s, present // block_align / rate) if present < promised else None)


#: The longest Ogg page (27-byte header, 255 lacing values of 255 bytes each): the last page starts within it.
OGG_TAIL_BYTES = 27 + 255 + 255 * 255


def ends_of(source: int | bytes) -> tuple[bytes, int, bytes]:
    """The first :data:`HEADER_BYTES`, the size and, for Ogg, the last :data:`OGG_TAIL_BYTES` of a file.

    ``source``: an open file descriptor (read with ``pread``, its offset untouched) or the file's bytes.
    """
    if isinstance(source, bytes):
        head, size = source[:HEADER_BYTES], len(source)
        return head, size, source[-OGG_TAIL_BYTES:] if head[:4] == b"OggS" else b""
    head, size = os.pread(source, HEADER_BYTES, 0), os.fstat(source).st_size
    return head, size, os.pread(source, OGG_TAIL_BYTES, max(0, size - OGG_TAIL_BYTES)) if head[:4] == b"OggS" else b""


def read_ends(path: str) -> tuple[bytes, int, bytes]:
    """:func:`ends_of` a path, from one open (os-level calls: a Python file object costs more than the check).

    :class:`UnusableAudioError` for a path that cannot be opened or is no regular file (a FIFO would block).
    """
    fd = open_regular(path, UnusableAudioError)
    try:
        return ends_of(fd)
    finally:
        os.close(fd)


def ogg_cut_short(tail: bytes) -> bool:
    """Whether an Ogg file whose last (up to :data:`OGG_TAIL_BYTES`) bytes are ``tail`` was cut short.

    An Ogg stream's last page carries the end-of-stream flag. A file cut short ends inside a page, or
    after one that does not close its stream; libsndfile and ffmpeg then take its length from the last
    whole page and decode what is there without an error. Bytes after the last whole page that are not
    a page (a tag some tool appended) leave the question open: not called cut short.
    """
    pos = tail.rfind(b"OggS")
    while pos >= 0 and (pos + 27 > len(tail) or tail[pos + 4] != 0):  # a page header: version 0
        pos = tail.rfind(b"OggS", 0, pos)
    if pos < 0:
        return False
    lacing = pos + 27 + tail[pos + 26]
    end = lacing + sum(tail[pos + 27 : lacing]) if lacing <= len(tail) else len(tail) + 1
    return end > len(tail) or (end == len(tail) and not tail[pos + 5] & 0x04)


def ogg_truncation(name: str, present_s: float | None) -> str:
    """The wording of an Ogg file cut short (its header holds no length to compare with)."""
    holds = f", the file holds {present_s:.3f} s" if present_s is not None else ""
    return f"{name}: truncated: its Ogg stream breaks off before its last page{holds}"


def truncation(path: str, promised_s: float, present_s: float) -> str:
    """The one wording of a file that holds less than its header promises."""
    return f"{path}: truncated: its header promises {promised_s:.3f} s of audio, the file holds {present_s:.3f} s"


def _flac_length(head: bytes) -> float | None:
    """Seconds of a FLAC file from its STREAMINFO block (None: total length not recorded)."""
    if head[:4] != b"fLaC" or len(head) < 42 or head[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(head[18:26], "big")
    rate, total = packed >> 44, packed & ((1 << 36) - 1)
    return total / rate if rate and total else None


def _ffmpeg_length(path: str) -> float | None:
    """Seconds of any container ffmpeg opens, from its header (``ffmpeg -i`` without an output decodes nothing)."""
    out = subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", path], capture_output=True)
    if b"Audio:" not in out.stderr:
        detail = out.stderr.decode(errors="replace").strip().splitlines()
        raise UnusableAudioError(f"{path}: no audio stream ffmpeg can read ({detail[-1] if detail else 'no output'})")
    return header_duration(out.stderr.decode(errors="replace"))


def audio_length(path: str) -> float | None:
    """The length of an audio file in seconds, read from its header, never by decoding it.

    WAV and FLAC headers are parsed directly (a few microseconds; opening the file with libsndfile
    costs ~50x more, which at 160k files is minutes); other formats ask libsndfile, containers it cannot
    open ask ffmpeg. ``None``: the file does not record its length. Raises :class:`UnusableAudioError`
    for an empty file, one that no reader accepts, a WAV file holding fewer bytes than its header
    promises (file size arithmetic) and an Ogg file whose last page is missing (:func:`ogg_cut_short`).
    """
    try:
        head, size, tail = read_ends(path)
    except OSError as err:
        raise UnusableAudioError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not head:
        raise UnusableAudioError(f"{path}: the file is empty")
    ext = path.rpartition(".")[2].lower()
    if ext == "wav" and (wav := wav_length(path, head, size)) is not None:
        if wav[1]:
            raise UnusableAudioError(wav[1])
        return wav[0]
    if ext == "flac" and (length := _flac_length(head)) is not None:
        return length
    if tail and ogg_cut_short(tail):
        raise UnusableAudioError(ogg_truncation(path, None))
    if ext not in FFMPEG_ONLY_EXTENSIONS:
        import soundfile as sf

        try:
            info = sf.info(path)
            return info.frames / info.samplerate if 0 < info.frames < 1 << 62 else None
        except (sf.LibsndfileError, RuntimeError) as err:
            libsndfile_error = str(err)
        try:
            return _ffmpeg_length(path)
        except UnusableAudioError:
            raise UnusableAudioError(f"{path}: not readable audio ({libsndfile_error})") from None
    return _ffmpeg_length(path)


# --- cutting a window out of a longer file -------------------------------------------------------
