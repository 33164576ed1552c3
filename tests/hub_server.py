"""A Hugging Face Hub stand-in on 127.0.0.1: the part of the Hub's HTTP API that pushes and loads use here.

The real Hub cannot be reached from tests, and no Hub emulator on PyPI works offline, so the real
clients (``huggingface_hub`` for pushes, ``datasets`` and ``HfFileSystem`` for loads) are pointed at
this server with ``HF_ENDPOINT``. It speaks:

* ``GET /api/whoami-v2``; ``POST /api/repos/create``; ``POST /api/validate-yaml``;
* ``GET /api/datasets/{repo}[/revision/{rev}]`` (repo info), ``GET .../refs``, ``POST .../branch/{name}``;
* ``POST .../preupload/{rev}`` (``regular`` or ``lfs`` per file, with the stored ``oid`` so unchanged files
  are skipped) and ``POST .../commit/{rev}`` (NDJSON: inline files, LFS pointers, deletions; atomic,
  ``parentCommit`` checked);
* ``POST /datasets/{repo}.git/info/lfs/objects/batch`` and ``PUT /lfs/{oid}`` (basic transfer, sha256
  checked; run clients with ``HF_HUB_DISABLE_XET=1``);
* ``POST .../paths-info/{rev}``, ``GET .../tree/{rev}[/{path}]`` (``recursive``), and
  ``GET``/``HEAD /datasets/{repo}/resolve/{rev}/{path}`` with ``Range``.

Writes need ``Authorization: Bearer <token>``; private repos need it for reads too. ``fail_lfs_uploads``
answers a 5xx to LFS uploads after a number of successes, as a storage backend failing mid-push does;
``trickle`` sends chosen answers' bodies a byte at a time, as a stalled Hub does.
Runs in a thread (``with HubServer() as hub``) or as a process: ``python tests/hub_server.py`` prints its URL.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "hf_test_token_audio_dialogues"
USER = "tester"
_LFS_PATTERNS = ("*.parquet", "*.png", "*.flac", "*.wav", "*.arrow", "*.bin")
_REGULAR_LIMIT = 10 << 20
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    """A file in a commit: inline bytes (regular) or an LFS object id and size."""

    size: int
    data: bytes | None = None
    lfs_oid: str | None = None

    @property
    def oid(self) -> str:
        """The git blob id (of the pointer file, for LFS)."""
        return git_blob_sha(self.data if self.data is not None else lfs_pointer(self.lfs_oid, self.size))

    def entry(self, path: str) -> dict:
        out: dict = {"type": "file", "path": path, "size": self.size, "oid": self.oid}
        if self.lfs_oid is not None:
            out["lfs"] = {"oid": self.lfs_oid, "size": self.size, "pointerSize": len(lfs_pointer(self.lfs_oid,
                                                                                                 self.size))}
        return out


@dataclass
class Commit:
    oid: str
    files: dict[str, Blob]
    parent: str | None
    title: str
    date: float


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """The Hub stand-in; ``url`` is what ``HF_ENDPOINT`` should be."""

    def __init__(self, lfs_dir: str | Path | None = None, host: str = "127.0.0.1") -> None:
        self._tmp = None if lfs_dir else tempfile.TemporaryDirectory(prefix="hub-lfs-")
        self.lfs_dir = Path(lfs_dir or self._tmp.name)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, int]] = []
        #: ``(successes to let through, status)``: LFS uploads after that many answer ``status``.
        self.lfs_fault: tuple[int, int] | None = None
        self.lfs_uploads = 0
        #: ``(regex, seconds)``: answers to requests whose ``METHOD path`` matches send their headers, then
        #: their body one byte every ``seconds``, as a stalled Hub or proxy does (see :meth:`trickle`).
        self.trickling: tuple[str, float] | None = None
        self._httpd = _Server((host, 0), _handler(self))
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and inspection -----------------------------------------------------------------

    def fail_lfs_uploads(self, after: int, status: int = 507) -> None:
        """Answer ``status`` to every LFS upload after the next ``after`` successful ones."""
        with self.lock:
            self.lfs_fault = (self.lfs_uploads + after, status)

    def trickle(self, pattern: str, every_s: float = 0.2) -> None:
        """Answer requests whose ``METHOD path`` matches ``pattern`` with headers, then a byte every ``every_s``."""
        with self.lock:
            self.trickling = (pattern, every_s)

    def heal(self) -> None:
        with self.lock:
            self.lfs_fault = None
            self.trickling = None

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        commit = repo.commits[repo.branches.get(revision, revision)]
        return {path: self._read(blob) for path, blob in commit.files.items()}

    def commit_count(self, repo_id: str) -> int:
        return len(self.repos[repo_id].commits)

    def _read(self, blob: Blob) -> bytes:
        return blob.data if blob.data is not None else (self.lfs_dir / blob.lfs_oid).read_bytes()

    # --- model -------------------------------------------------------------------------------

    def _commit(self, repo: Repo, files: dict[str, Blob], parent: str | None, title: str) -> str:
        digest = hashlib.sha1(f"{parent}\0{title}\0{time.time_ns()}\0{len(repo.commits)}".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].oid}\n".encode())
        oid = digest.hexdigest()
        repo.commits[oid] = Commit(oid, files, parent, title, time.time())
        return oid

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if repo_id in self.repos:
                raise HubError(409, "You already created this dataset repo", None)
            repo = Repo(repo_id, private)
            attributes = "\n".join(f"{p} filter=lfs diff=lfs merge=lfs -text" for p in _LFS_PATTERNS) + "\n"
            blob = Blob(len(attributes), data=attributes.encode())
            repo.branches["main"] = self._commit(repo, {".gitattributes": blob}, None, "initial commit")
            self.repos[repo_id] = repo
            return repo

    def repo(self, repo_id: str, token: str | None, write: bool = False) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token != TOKEN):
            raise HubError(404, f"Repository Not Found for url: {repo_id}", "RepoNotFound")
        if write and token != TOKEN:
            raise HubError(401, "Invalid credentials", None)
        return repo

    @staticmethod
    def resolve(repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision, revision)
        if oid not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def apply_commit(self, repo: Repo, revision: str, lines: list[dict]) -> str:
        """Apply one NDJSON commit atomically: every operation is checked before the branch moves."""
        with self.lock:
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = repo.branches[revision]
            header = next((line["value"] for line in lines if line.get("key") == "header"), {})
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, "A commit has happened since. Please refresh and try again.", None)
            files = dict(repo.commits[head].files)
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    data = base64.b64decode(value["content"])
                    files[value["path"]] = Blob(len(data), data=data)
                elif key == "lfsFile":
                    if not (self.lfs_dir / value["oid"]).is_file():
                        raise HubError(422, f"LFS object {value['oid']} of {value['path']} was not uploaded", None)
                    files[value["path"]] = Blob(int(value["size"]), lfs_oid=value["oid"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}",
                                       "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                elif key != "header":
                    raise HubError(400, f"unsupported commit operation {key!r}", None)
            oid = self._commit(repo, files, head, header.get("summary", ""))
            repo.branches[revision] = oid
            return oid


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


def _tree_entries(files: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
    base = base.strip("/")
    prefix = f"{base}/" if base else ""
    out: dict[str, dict] = {}
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            folder = prefix + "/".join(rest[:depth])
            if recursive or depth == 1:
                out.setdefault(folder, {"type": "directory", "path": folder, "oid": git_blob_sha(folder.encode())})
            if not recursive:
                break
        if recursive or len(rest) == 1:
            out[path] = files[path].entry(path)
    return list(out.values())


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        # --- plumbing ----------------------------------------------------------------------------

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                return self.rfile.read(length)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return b""

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth[7:] if auth.startswith("Bearer ") else None

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(body)) if "Content-Length" not in (headers or {}) else
                             headers["Content-Length"])
            self.end_headers()
            hub.log.append((self.command, self.path, status))
            trickling = hub.trickling
            if body and self.command != "HEAD" and trickling and re.search(trickling[0], f"{self.command} {self.path}"):
                self.wfile.flush()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(trickling[1])
                except OSError:  # the client gave up
                    self.close_connection = True
                return
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: object, headers: dict | None = None) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, e: HubError) -> None:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json(e.status, {"error": e.message}, headers)

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            try:
                for method, pattern, fn in ROUTES:
                    if method == self.command or (method == "GET" and self.command == "HEAD"):
                        match = re.fullmatch(pattern, path)
                        if match:
                            fn(self, query, *match.groups())
                            return
                self._error(HubError(404, f"no route {self.command} {path}", None))
            except HubError as e:
                self._error(e)

        do_GET = do_HEAD = do_POST = do_PUT = _dispatch

        # --- account and repos ------------------------------------------------------------------

        def whoami(self, query: dict) -> None:
            if self._token() != TOKEN:
                raise HubError(401, "Invalid credentials in Authorization header", None)
            self._json(200, {"type": "user", "name": USER, "fullname": USER, "orgs": [],
                             "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

        def create_repo(self, query: dict) -> None:
            if self._token() != TOKEN:
                raise HubError(401, "Invalid credentials", None)
            body = json.loads(self._body() or b"{}")
            repo_id = f"{body.get('organization') or USER}/{body['name']}"
            url = f"{hub.url}/datasets/{repo_id}"
            try:
                hub.create_repo(repo_id, bool(body.get("private")) or body.get("visibility") == "private")
            except HubError as e:  # the Hub names the existing repo's URL in its 409
                self._json(e.status, {"error": e.message, "url": url}, {"X-Error-Message": e.message})
                return
            self._json(200, {"url": url, "name": repo_id})

        def validate_yaml(self, query: dict) -> None:
            import yaml

            content = json.loads(self._body()).get("content", "")
            match = re.match(r"^---\n(.*?)\n---", content, re.S)
            try:
                data = yaml.safe_load(match.group(1)) if match else {}
            except yaml.YAMLError as e:
                self._json(400, {"errors": [{"message": str(e)}]})
                return
            if not isinstance(data, dict):
                self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
                return
            self._json(200, {"errors": [], "warnings": []})

        def repo_info(self, query: dict, repo_id: str, revision: str | None = None) -> None:
            repo = hub.repo(repo_id, self._token())
            commit = hub.resolve(repo, revision or "main")
            siblings = [{"rfilename": p} for p in sorted(commit.files)]
            last = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))
            self._json(200, {"_id": repo_id, "id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid,
                             "private": repo.private, "gated": False, "disabled": False, "downloads": 0,
                             "likes": 0, "tags": [], "siblings": siblings, "lastModified": last,
                             "createdAt": last, "cardData": {}})

        def refs(self, query: dict, repo_id: str) -> None:
            repo = hub.repo(repo_id, self._token())
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()]
            self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

        def create_branch(self, query: dict, repo_id: str, branch: str) -> None:
            repo = hub.repo(repo_id, self._token(), write=True)
            body = json.loads(self._body() or b"{}")
            with hub.lock:
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}", None)
                repo.branches[branch] = hub.resolve(repo, body.get("startingPoint") or "main").oid
            self._json(200, {})

        # --- upload -----------------------------------------------------------------------------

        def preupload(self, query: dict, repo_id: str, revision: str) -> None:
            repo = hub.repo(repo_id, self._token(), write=True)
            commit = hub.resolve(repo, revision)
            out = []
            for f in json.loads(self._body())["files"]:
                sample = base64.b64decode(f.get("sample", ""))
                lfs = (any(fnmatch.fnmatch(f["path"], p) for p in _LFS_PATTERNS) or f["size"] > _REGULAR_LIMIT
                       or b"\0" in sample)
                existing = commit.files.get(f["path"])
                oid = None
                if existing is not None:
                    oid = existing.lfs_oid if existing.lfs_oid else git_blob_sha(existing.data)
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            self._json(200, {"files": out, "commitOid": commit.oid})

        def commit(self, query: dict, repo_id: str, revision: str) -> None:
            repo = hub.repo(repo_id, self._token(), write=True)
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            oid = hub.apply_commit(repo, revision, lines)
            self._json(200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                             "success": True, "pullRequestUrl": None})

        def lfs_batch(self, query: dict, repo_id: str) -> None:
            hub.repo(repo_id, self._token(), write=True)
            body = json.loads(self._body())
            objects = []
            for obj in body.get("objects", []):
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if not (hub.lfs_dir / obj["oid"]).is_file():
                    entry["actions"] = {"upload": {"href": f"{hub.url}/lfs/{obj['oid']}", "header": {}}}
                objects.append(entry)
            self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                       {"Content-Type": "application/vnd.git-lfs+json"})

        def lfs_upload(self, query: dict, oid: str) -> None:
            data = self._body()
            with hub.lock:
                fault = hub.lfs_fault
                if fault is not None and hub.lfs_uploads >= fault[0]:
                    raise HubError(fault[1], "storage backend unavailable (injected)", None)
                hub.lfs_uploads += 1
            if hashlib.sha256(data).hexdigest() != oid:
                raise HubError(400, f"LFS upload does not match its oid {oid}", None)
            target = hub.lfs_dir / oid
            partial = target.with_suffix(f".{threading.get_ident()}.partial")
            partial.write_bytes(data)
            partial.replace(target)
            self._send(200)

        # --- download ---------------------------------------------------------------------------

        def paths_info(self, query: dict, repo_id: str, revision: str) -> None:
            repo = hub.repo(repo_id, self._token())
            commit = hub.resolve(repo, revision)
            raw = self._body()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = parse_qs(raw.decode()).get("paths", [])
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(commit.files[p].entry(p))
                elif any(f.startswith(p + "/") for f in commit.files) or p == "":
                    out.append({"type": "directory", "path": p, "oid": git_blob_sha(p.encode())})
            self._json(200, out)

        def tree(self, query: dict, repo_id: str, revision: str, base: str | None = None) -> None:
            repo = hub.repo(repo_id, self._token())
            commit = hub.resolve(repo, revision)
            base = (base or "").strip("/")
            if base and not any(f.startswith(base + "/") for f in commit.files):
                raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            self._json(200, _tree_entries(commit.files, base, recursive))

        def resolve_file(self, query: dict, repo_id: str, revision: str, path: str) -> None:
            repo = hub.repo(repo_id, self._token())
            commit = hub.resolve(repo, revision)
            blob = commit.files.get(path)
            if blob is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            data = hub._read(blob)
            headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes",
                       "ETag": f'"{blob.lfs_oid or blob.oid}"', "Content-Type": "application/octet-stream"}
            if blob.lfs_oid:
                headers["X-Linked-Etag"] = f'"{blob.lfs_oid}"'
                headers["X-Linked-Size"] = blob.size
            status, body = 200, data
            match = _RANGE_RE.match(self.headers.get("Range", ""))
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    start = int(match.group(1))
                    end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
                else:
                    start, end = max(0, len(data) - int(match.group(2))), len(data) - 1
                if start >= len(data):
                    self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
                    return
                status, body = 206, data[start:end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(status, body, headers)

    repo = r"([^/]+/[^/]+)"
    ROUTES = [
        ("GET", r"/api/whoami-v2", Handler.whoami),
        ("POST", r"/api/repos/create", Handler.create_repo),
        ("POST", r"/api/validate-yaml", Handler.validate_yaml),
        ("GET", rf"/api/datasets/{repo}/refs", Handler.refs),
        ("POST", rf"/api/datasets/{repo}/branch/(.+)", Handler.create_branch),
        ("POST", rf"/api/datasets/{repo}/preupload/(.+)", Handler.preupload),
        ("POST", rf"/api/datasets/{repo}/commit/(.+)", Handler.commit),
        ("POST", rf"/api/datasets/{repo}/paths-info/(.+)", Handler.paths_info),
        ("GET", rf"/api/datasets/{repo}/tree/([^/]+)(?:/(.*))?", Handler.tree),
        ("GET", rf"/api/datasets/{repo}/revision/(.+)", Handler.repo_info),
        ("GET", rf"/api/datasets/{repo}", Handler.repo_info),
        ("POST", rf"/datasets/{repo}\.git/info/lfs/objects/batch", Handler.lfs_batch),
        ("PUT", r"/lfs/([0-9a-f]{64})", Handler.lfs_upload),
        ("GET", rf"/datasets/{repo}/resolve/([^/]+)/(.+)", Handler.resolve_file),
    ]
    return Handler


if __name__ == "__main__":
    server = HubServer(sys.argv[1] if len(sys.argv) > 1 else None).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
