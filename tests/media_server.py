"""A real HTTP media server on 127.0.0.1 for offline download tests and benchmarks.

YouTube cannot be reached from tests, so the fetcher is exercised through the same protocol yt-dlp and
ffmpeg speak to any media host: plain HTTP with byte ranges. ``python -m http.server`` is not enough
(no ``Range`` support, so time-range cuts of FLAC/M4A come out empty while yt-dlp reports success);
this server implements ``Range`` (RFC 9110 single ranges), and can misbehave on demand:

* answer a status code (404, 410, 429, 503, ...) for the next *n* requests of a file;
* drop the connection after *k* body bytes for the next *n* responses of a file, having promised the
  full ``Content-Length`` (what a flaky CDN does mid-transfer);
* trickle a file's body, one byte every 0.2 s, so that no read ever waits long (a whole-request deadline
  is what ends such a download);
* stall the media (ranged) requests of a file until the test lets them go, so that a download is
  caught in the middle however fast the machine is;
* count requests and body bytes actually written, per file and in total.

Files are held in memory and served under ``/media/<name>``. Usage::

    with MediaServer() as server:
        server.add("abc.flac", data)
        url = server.url("abc.flac")
"""

from __future__ import annotations

import json
import mimetypes
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from audio_dialogues.sources.clips import Clip

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024
_CONTENT_TYPES = {".flac": "audio/flac", ".m4a": "audio/mp4", ".wav": "audio/wav", ".ogg": "audio/ogg",
                  ".opus": "audio/ogg", ".webm": "audio/webm", ".mp3": "audio/mpeg"}


@dataclass
class _Fault:
    remaining: int
    status: int | None = None  # answer this status instead of the file
    drop_after: int | None = None  # or: send this many body bytes, then cut the connection
    ranged_only: bool = True  # drops hit only ranged (media) requests, not an extractor's probe
    skip: int = 0  # let this many eligible responses through first


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up mid-response all the time (ffmpeg seeks, yt-dlp probes): not an error here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


class MediaServer:
    """Serve in-memory files with Range support, injectable faults and byte/request counters."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._files: dict[str, bytes] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._trickled: set[str] = set()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.drops: Counter[str] = Counter()
        #: One ``(name, Range header or None, status, body bytes sent)`` per answered request.
        self.log: list[tuple[str, str | None, int, int]] = []
        #: Per file, the ``Cookie`` headers received, and how many requests came as a proxy's
        #: (absolute-URI form, ``GET http://host/media/x``).
        self.cookies: dict[str, list[str]] = {}
        self.proxied: Counter[str] = Counter()
        self._holds: dict[str, threading.Event] = {}
        #: Per file, the requests now stalled by :meth:`hold`.
        self.stalled: Counter[str] = Counter()
        self._httpd = _QuietServer((host, 0), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> MediaServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="media-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- content and faults ------------------------------------------------------------------

    def add(self, name: str, data: bytes | Path) -> str:
        """Serve ``data`` (bytes or a file's content) as ``/media/<name>``; returns its URL."""
        if isinstance(data, Path):
            data = data.read_bytes()
        with self._lock:
            self._files[name] = bytes(data)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/media/{name}"

    def url_template(self, ext: str) -> str:
        """A fetcher ``url_template`` naming ``/media/{ytid}.<ext>`` on this server."""
        return f"http://127.0.0.1:{self.port}/media/{{ytid}}.{ext}"

    def fail(self, name: str, status: int, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` requests for ``name`` (queued after earlier faults)."""
        with self._lock:
            self._faults.setdefault(name, []).append(_Fault(times, status=status))

    def drop(self, name: str, after_bytes: int, times: int = 1, *, skip: int = 0, ranged_only: bool = True) -> None:
        """Cut the next ``times`` responses for ``name`` that would send more than ``after_bytes``.

        With ``ranged_only`` only responses to ``Range`` requests count: those are ffmpeg's media reads,
        while yt-dlp's generic extractor probes the URL with a plain GET it never reads. ``skip`` lets
        that many eligible responses through first (ffmpeg's first ranged read of a faststart M4A only
        parses the header; its second one reads the samples of the cut).
        """
        fault = _Fault(times, drop_after=after_bytes, ranged_only=ranged_only, skip=skip)
        with self._lock:
            self._faults.setdefault(name, []).append(fault)

    def trickle(self, name: str) -> None:
        """Send ``name``'s body one byte every 0.2 s from now on."""
        with self._lock:
            self._trickled.add(name)

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Stall every ranged request for ``name`` (ffmpeg's media reads, not yt-dlp's probe) until the block
        exits: a fetch cannot finish while it lasts, and ``stalled[name]`` shows a download caught midway."""
        gate = threading.Event()
        with self._lock:
            self._holds[name] = gate
        try:
            yield
        finally:
            with self._lock:
                del self._holds[name]
            gate.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._trickled.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_sent.clear()
            self.statuses.clear()
            self.drops.clear()
            self.log.clear()
            self.cookies.clear()
            self.proxied.clear()

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(self.bytes_sent.values())

    # --- the handler ---------------------------------------------------------------------------

    def _take_status_fault(self, name: str) -> int | None:
        with self._lock:
            faults = self._faults.get(name) or []
            if faults and faults[0].status is not None:
                faults[0].remaining -= 1
                status = faults[0].status
                if faults[0].remaining <= 0:
                    faults.pop(0)
                return status
        return None

    def _drop_point(self, name: str, body_length: int, ranged: bool) -> int | None:
        with self._lock:
            faults = self._faults.get(name) or []
            if (
                faults
                and faults[0].drop_after is not None
                and body_length > faults[0].drop_after
                and (ranged or not faults[0].ranged_only)
            ):
                if faults[0].skip > 0:
                    faults[0].skip -= 1
                    return None
                faults[0].remaining -= 1
                point = faults[0].drop_after
                if faults[0].remaining <= 0:
                    faults.pop(0)
                self.drops[name] += 1
                return point
        return None

    def _count(self, name: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_sent[name] += nbytes

    def _handler_class(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by design
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _control(self) -> None:
                """Counters as JSON (``/_stats``) or reset (``/_reset``), for a server in another process."""
                if self.path == "/_reset":
                    server.reset_counters()
                with server._lock:
                    stats = {"requests": dict(server.requests), "bytes_sent": dict(server.bytes_sent)}
                body = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _simple(self, name: str, status: int) -> None:
                body = f"{status}\n".encode()
                with server._lock:
                    server.statuses[(name, status)] += 1
                    server.log.append((name, self.headers.get("Range"), status, 0))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                if self.path in ("/_stats", "/_reset"):
                    return self._control()
                # A request in absolute-URI form is one for a proxy: serve it too (tests use this server
                # as the proxy in front of an unresolvable host) and count it.
                target = urlsplit(self.path) if self.path.startswith("http://") else None
                path = (target.path if target else self.path).split("?", 1)[0]
                name = path[len("/media/"):] if path.startswith("/media/") else ""
                with server._lock:
                    server.requests[name] += 1
                    if target is not None:
                        server.proxied[name] += 1
                    if self.headers.get("Cookie"):
                        server.cookies.setdefault(name, []).append(self.headers["Cookie"])
                    data = server._files.get(name)
                with server._lock:
                    gate = server._holds.get(name) if self.headers.get("Range") else None
                    if gate is not None:
                        server.stalled[name] += 1
                if gate is not None:
                    gate.wait(timeout=600)
                    with server._lock:
                        server.stalled[name] -= 1
                status = server._take_status_fault(name)
                if status is not None:
                    return self._simple(name, status)
                if data is None:
                    return self._simple(name, 404)
                start, end = 0, len(data) - 1
                status = 200
                header = self.headers.get("Range")
                if header:
                    match = _RANGE_RE.match(header.strip())
                    if not match or not (match.group(1) or match.group(2)):
                        return self._simple(name, 416)
                    first, last = match.group(1), match.group(2)
                    if first:
                        start = int(first)
                        end = min(int(last), len(data) - 1) if last else len(data) - 1
                    else:  # suffix range: the last N bytes
                        start = max(0, len(data) - int(last))
                    if start >= len(data) or start > end:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = memoryview(data)[start:end + 1]
                with server._lock:
                    server.statuses[(name, status)] += 1
                self.send_response(status)
                ctype = _CONTENT_TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0]
                self.send_header("Content-Type", ctype or "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if head:
                    return
                drop_at = server._drop_point(name, len(body), ranged=bool(header))
                limit = len(body) if drop_at is None else drop_at
                step = 1 if name in server._trickled else _CHUNK
                sent = 0
                try:
                    while sent < limit:
                        chunk = body[sent:min(limit, sent + step)]
                        self.wfile.write(chunk)
                        if step == 1:
                            self.wfile.flush()
                            time.sleep(0.2)
                        sent += len(chunk)
                        server._count(name, len(chunk))
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                finally:
                    with server._lock:
                        server.log.append((name, header, status, sent))
                if drop_at is not None:
                    # Promised Content-Length, delivered less: cut hard, as a failing peer would.
                    self.close_connection = True
                    try:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        return Handler


def chirp(seconds: float, rate: int, channels: int = 1):
    """A test signal whose every instant differs: a 200 Hz -> 4 kHz sweep (channel 2: a slower sweep).

    Any misaligned, shortened or resampled-wrong cut of it stops matching the reference sample by sample.
    """
    import numpy as np

    t = np.arange(int(round(seconds * rate))) / rate
    sweep = 0.45 * np.sin(2 * np.pi * (200 * t + (4000 - 200) / (2 * seconds) * t**2))
    if channels == 1:
        return sweep.astype("float32")
    other = 0.3 * np.sin(2 * np.pi * (300 * t + (1500 - 300) / (2 * seconds) * t**2))
    return np.stack([sweep, other] + [other] * (channels - 2), axis=1).astype("float32")


def write_media(path: Path, seconds: float, rate: int, channels: int = 1, ffmpeg: str = "ffmpeg") -> Path:
    """Write :func:`chirp` to ``path``: FLAC/WAV losslessly, ``.m4a`` as AAC with the index up front.

    The M4A is laid out like YouTube's audio (index first, so a time-range read seeks once).
    """
    import subprocess

    import soundfile as sf

    path = Path(path)
    data = chirp(seconds, rate, channels)
    if path.suffix in (".flac", ".wav"):
        sf.write(path, data, rate)
        return path
    wav = path.with_suffix(".src.wav")
    sf.write(wav, data, rate)
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "128k",
                    "-movflags", "+faststart", str(path)], check=True)
    wav.unlink()
    return path


def main() -> None:
    """``python -m tests.media_server MANIFEST.json``: serve ``{name: file}``, print the port, run until killed.

    For benchmarks, so that the server does not share a GIL with the downloader being measured; read the
    counters from ``/_stats`` (``/_reset`` clears them).
    """
    import time

    manifest = json.loads(Path(sys.argv[1]).read_text())
    blobs: dict[str, bytes] = {}
    server = MediaServer().start()
    for name, path in manifest.items():
        if path not in blobs:
            blobs[path] = Path(path).read_bytes()
        server.add(name, blobs[path])
    print(server.port, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()


# -- what fetch tests serve and the annotations that name it --------------------------------------

#: Length of the clips :func:`make_clips` asks for, in seconds.
CLIP_S = 4.0


@contextmanager
def source_server(folder: Path) -> Iterator[MediaServer]:
    """A running server whose ``source`` is one 12 s AAC file, which :func:`make_clips` serves under every id."""
    source = write_media(folder / "src.m4a", 12.0, 44100)
    with MediaServer() as srv:
        srv.source = source
        yield srv


def make_clips(server: MediaServer, prefix: str, n: int) -> list[Clip]:
    """``n`` clips of distinct ids (with ``_`` and ``-``, as YouTube's), each served from the server's source."""
    clips = [Clip(f"{prefix}{i:03d}_-x"[:11].ljust(11, "x"), 2.0, 2.0 + CLIP_S) for i in range(n)]
    assert len({c.ytid for c in clips}) == n
    for clip in clips:
        server.add(f"{clip.ytid}.m4a", server.source)
    return clips


def write_annotations(folder: Path, clips: list[Clip]) -> Path:
    """A canonical-shape ``audioset_test.jsonl``: one record per clip."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "audioset_test.jsonl", "w") as f:
        for i, clip in enumerate(clips):
            f.write(json.dumps({"id": f"r{i}", "clips": [clip.to_dict()],
                                "turns": [{"user": "What is it?", "assistant": "A sweep."}]}) + "\n")
    return folder
