"""Uploading a repo folder to the Hub: one commit per push, nothing half-written, nothing when unchanged.

Transport is ``huggingface_hub``: the token comes from where it always does (``HF_TOKEN``, the CLI
login), ``HF_ENDPOINT`` picks the server. The folder is built completely on local disk first; its LFS
files are uploaded before the one commit that makes them visible, so a failure at any point leaves the
branch at the commit it had. The commit names its parent, so a concurrent push to the same branch
fails instead of being overwritten. Files the Hub already has with the same content are not sent, and a
push that changes nothing creates no commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub_http
from ..files import OUTPUT_MANIFEST
from .plots import PLOTS_DIR
from .repo_folder import DATA_DIR, FolderReport, PublishError, build_repo_folder, check_repo_id

REPO_TYPE = "dataset"
#: Remote files a push owns: replaced by the new version, removed when the new version has no such file.
OWNED_PATTERNS = (f"{DATA_DIR}/**", f"{PLOTS_DIR}/**")


@dataclass
class PushResult:
    repo_id: str
    revision: str
    #: The branch head after the push (the previous head when nothing changed).
    commit: str
    #: Whether this push made a commit.
    changed: bool
    url: str
    report: FolderReport

    def summary(self) -> str:
        what = f"new commit {self.commit[:12]}" if self.changed else f"unchanged (head {self.commit[:12]})"
        return f"{self.report.summary()}\n{self.repo_id}@{self.revision}: {what}\n{self.url}"


def _api(token: str | None, endpoint: str | None):
    from huggingface_hub import HfApi, get_token

    hub_http.install()
    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass token=")
    return HfApi(endpoint=endpoint, token=token)


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> tuple[str, bool, str]:
    """Upload ``folder`` to ``repo_id`` (created if needed) as one commit; ``(head, changed, url)``."""
    api = _api(token, endpoint)
    branch = revision or "main"
    try:
        url = str(api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True))
        # create_repo(exist_ok=True) leaves an existing repo as it is: check before anything is written to it.
        if private and not api.repo_info(repo_id, repo_type=REPO_TYPE).private:
            raise PublishError(
                f"{repo_id} already exists and is not private, so a private push would publish this version "
                "publicly; nothing was sent. Make the repo private first (its settings page on the Hub, or "
                f"HfApi().update_repo_settings({repo_id!r}, private=True, repo_type='dataset')), or push without "
                "--private")
        if branch != "main":
            api.create_branch(repo_id, repo_type=REPO_TYPE, branch=branch, exist_ok=True)
        head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch).sha
        info = api.upload_folder(
            repo_id=repo_id, repo_type=REPO_TYPE, folder_path=str(folder), revision=branch,
            commit_message=commit_message or "Publish Audio Dialogues with audio-dialogues",
            delete_patterns=list(OWNED_PATTERNS), parent_commit=head, ignore_patterns=[OUTPUT_MANIFEST],
        )
    except PublishError:
        raise
    except Exception as e:  # noqa: BLE001 - any transport failure (HTTP, network, disk) ends the same way
        raise PublishError(f"push to {repo_id}@{branch} failed: {_describe(e)}; the branch is unchanged "
                           "(nothing was committed), run the same push again") from e
    return info.oid, info.oid != head, url


def _describe(error: BaseException) -> str:
    """The HTTP status and first message line of the innermost Hub error in ``error``'s chain."""
    from huggingface_hub.errors import HfHubHTTPError

    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    for e in chain:
        if isinstance(e, hub_http.HubTimeout):  # names the request and its deadline; the socket's error does not
            return str(e)
    for e in reversed(chain):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            return f"HTTP {e.response.status_code} ({str(chain[0]).splitlines()[0]} {str(e).splitlines()[0]})"
    return f"{type(chain[-1]).__name__}: {str(chain[-1]).splitlines()[0] if str(chain[-1]) else ''}"


def push(
    repo_id: str,
    data_dir: str | Path,
    configs: Sequence[str] | None = None,
    *,
    embed_audio: bool = False,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    **folder_options: Any,
) -> PushResult:
    """Publish the ``configs`` of ``data_dir`` to the Hub dataset repo ``repo_id`` in one commit.

    ``folder_options`` are :func:`~audio_dialogues.publish.repo_folder.build_repo_folder`'s (source
    metadata, ``audio_dir``, ``audio_cache_dir``). The repo then holds exactly the configs given: shards
    and figures of other configs from an earlier push are removed, other files are left alone.
    """
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="audio-dialogues-push-") as tmp:
        report = build_repo_folder(Path(tmp) / "repo", data_dir, configs, embed_audio=embed_audio,
                                   repo_id=repo_id, **folder_options)
        head, changed, url = upload_folder(report.root, repo_id, revision=revision, private=private,
                                           commit_message=commit_message, token=token, endpoint=endpoint)
    return PushResult(repo_id, revision or "main", head, changed, url, report)
