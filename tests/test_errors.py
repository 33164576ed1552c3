"""One error family: every exception class of the package is an AudioDialoguesError, with its old built-in base kept."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import audio_dialogues
from audio_dialogues.errors import AudioDialoguesError, UsageError, exit_code


def package_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a module of the package (imported here: the test process may import all)."""
    found = set()
    for info in pkgutil.walk_packages(audio_dialogues.__path__, "audio_dialogues."):
        if info.name.endswith(".cli") or ".sample." in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.add(value)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


EXCEPTIONS = package_exceptions()
#: Ctrl-C during fetch carries its report; it is an interrupt (caught by ``except KeyboardInterrupt``), not an error.
INTERRUPTS = {"FetchInterrupted"}


def test_the_package_defines_its_errors() -> None:
    assert len(EXCEPTIONS) >= 21, [c.__name__ for c in EXCEPTIONS]


@pytest.mark.parametrize("kind", EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_exception_class_is_an_audio_dialogues_error(kind: type[BaseException]) -> None:
    if kind.__name__ in INTERRUPTS:
        assert issubclass(kind, KeyboardInterrupt) and not issubclass(kind, Exception)
    else:
        assert issubclass(kind, AudioDialoguesError)


@pytest.mark.parametrize("name, builtin", [
    ("sources.annotations.AnnotationError", ValueError), ("sources.metadata.MetadataError", ValueError),
    ("sources.clips.ClipError", ValueError), ("dataset.options.ConfigError", ValueError),
    ("dataset.resolution.MissingAudioError", FileNotFoundError), ("files.OutputError", OSError),
    ("generate.options.GenerateError", ValueError), ("evaluation.scoring.EvaluationError", ValueError),
    ("export.chat_formats.ExportError", ValueError), ("publish.repo_folder.PublishError", ValueError),
    ("dataset.decoding.AudioDecodeError", RuntimeError), ("evaluation.tokenizer.TokenizerError", RuntimeError),
    ("fetch.options.FetchStopped", RuntimeError), ("fetch.options.FetchError", RuntimeError),
])
def test_the_builtin_base_callers_relied_on_is_kept(name: str, builtin: type[Exception]) -> None:
    module, _, cls = name.rpartition(".")
    kind = getattr(importlib.import_module(f"audio_dialogues.{module}"), cls)
    error = kind("it names the file")
    assert isinstance(error, builtin) and isinstance(error, AudioDialoguesError) and str(error) == "it names the file"


def test_exit_codes_are_decided_in_one_place() -> None:
    from audio_dialogues.fetch.options import CacheError, FetchError
    from audio_dialogues.files import OutputError
    from audio_dialogues.sources.annotations import AnnotationError

    assert exit_code(AnnotationError("bad")) == 1 and exit_code(OutputError("full")) == 1
    assert exit_code(CacheError("read-only")) == 1
    assert exit_code(UsageError("--workers")) == 2 and exit_code(FetchError("no ffmpeg")) == 2
    assert exit_code(KeyboardInterrupt()) == 130


def test_the_base_is_public_and_costs_no_import() -> None:
    code = ("import sys, audio_dialogues\nbefore = set(sys.modules)\nbase = audio_dialogues.AudioDialoguesError\n"
            "print(sorted(set(sys.modules) - before), base.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["['audio_dialogues.errors']", "audio_dialogues.errors"]
    assert audio_dialogues.AudioDialoguesError is AudioDialoguesError and audio_dialogues.UsageError is UsageError
    assert {"AudioDialoguesError", "UsageError"} <= set(audio_dialogues.__all__)


# ---- foreign exceptions are wrapped where they enter the package, cause chained, reason kept -------------------


def test_an_unknown_config_or_split_is_a_config_error_not_datasets_value_error(tmp_path) -> None:
    from audio_dialogues.dataset.options import ConfigError

    paths = audio_dialogues.sample_paths()
    with pytest.raises(ConfigError, match="unknown config 'speech'; the configs are: audioset, music, comparison"):
        audio_dialogues.load("speech", cache_dir=str(tmp_path), **paths)
    for split, streaming in (("dev", False), ("dev", True), ("train[:x]", False)):
        with pytest.raises(ConfigError, match=r"split='.*' is not valid") as raised:
            audio_dialogues.load("music", split=split, streaming=streaming, cache_dir=str(tmp_path), **paths)
        assert isinstance(raised.value.__cause__, ValueError)  # datasets' own message is kept too
    assert audio_dialogues.load("music", split="train[:1]", cache_dir=str(tmp_path), **paths).num_rows == 1


def test_a_cache_dir_that_is_a_file_is_an_output_error(tmp_path) -> None:
    from audio_dialogues.files import OutputError

    (tmp_path / "cache").write_text("a file")
    with pytest.raises(OutputError, match="cache: a file stands where a folder should be"):
        audio_dialogues.load("music", cache_dir=str(tmp_path / "cache"), **audio_dialogues.sample_paths())


_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
import audio_dialogues
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    audio_dialogues.load("music", cache_dir=sys.argv[1], **audio_dialogues.sample_paths())
    print("prepared")
except audio_dialogues.AudioDialoguesError as e:
    print("package error:", type(e).__name__, e)
except BaseException as e:
    print("foreign error:", type(e).__module__, type(e).__name__, e)
"""


def test_a_write_failure_while_preparing_is_an_output_error_naming_the_cache(tmp_path) -> None:
    """A file size limit (ulimit -f) stands in for a full disk: datasets wraps the arrow writer's OSError in its
    DatasetGenerationError, which reached the user as such. Several limits hit different writes."""
    results = []
    for limit in (1000, 1500, 2000, 2500, 3000, 6000):
        done = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path / f"c{limit}"), str(limit)],
                              capture_output=True, text=True, timeout=120)
        results.append(done.stdout.strip().splitlines()[-1])
    failed = [r for r in results if r != "prepared"]
    assert failed, results
    for result in failed:
        assert result.startswith("package error: OutputError") and "a file size limit was hit" in result, results
        assert "the datasets cache" in result, result


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let datasets download (tests run offline by default), from the loopback servers the tests start."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)


@pytest.fixture()
def http_server(online: None):
    """Answers GET /<status>.csv with that status (418 with its own reason phrase)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status = int(self.path.strip("/").split(".")[0])
            self.send_response(status, "Short And Stout" if status == 418 else None)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("path, reason", [("404.csv", "404, message='Not Found'"),
                                          ("418.csv", "418, message='Short And Stout'"),
                                          ("503.csv", "503")])
def test_a_metadata_url_that_fails_names_the_url_and_the_http_reason(http_server, tmp_path, monkeypatch, path,
                                                                     reason) -> None:
    from audio_dialogues.sources.metadata import MetadataError, open_source_metadata

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    url = f"{http_server}/{path}"
    with pytest.raises(MetadataError) as raised:
        open_source_metadata({"musiccaps_csv": [url]})
    assert str(raised.value).startswith(f"{url}: the musiccaps_csv file could not be downloaded: {reason}")
    assert raised.value.__cause__ is not None


def test_a_metadata_url_offline_is_a_metadata_error_naming_it(tmp_path, monkeypatch) -> None:
    """Tests run with HF_HUB_OFFLINE=1 (conftest): huggingface_hub's OfflineModeIsEnabled reached the user."""
    from audio_dialogues.sources.metadata import MetadataError, open_source_metadata

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(MetadataError, match=r"ontology.json: the ontology file could not be downloaded: Offline mode "
                                            r"is enabled") as raised:
        open_source_metadata({"ontology": ["http://127.0.0.1:9/ontology.json"]})
    assert type(raised.value.__cause__).__module__.startswith("huggingface_hub")


def test_a_metadata_url_that_cannot_be_reached_keeps_the_reason(online, tmp_path, monkeypatch) -> None:
    from audio_dialogues.sources.metadata import MetadataError, open_source_metadata

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(MetadataError, match=r"127.0.0.1:9/x.csv: the musiccaps_csv file could not be downloaded: "
                                            r"Cannot connect to host 127.0.0.1:9.*Connect call failed"):
        open_source_metadata({"musiccaps_csv": ["http://127.0.0.1:9/x.csv"]})


@pytest.mark.parametrize("fault", ["html", "truncated", "nested", "long number", "list"])
def test_a_chat_answer_that_is_no_completion_is_an_invalid_response_retried(fault: str) -> None:
    import asyncio

    from audio_dialogues.llm.client import ChatClient, ModelSettings, RequestFailed
    from tests.openai_server import OpenAIServer

    async def ask(base_url: str) -> None:
        chat = ChatClient(ModelSettings("m", max_tokens=8), base_url=base_url, backoff_s=0.01, max_attempts=2)
        try:
            await chat.complete([{"role": "user", "content": f"item {fault}"}])
        finally:
            await chat.close()

    with OpenAIServer() as server:
        server.fault(f"item {fault}", fault, fault)
        with pytest.raises(RequestFailed, match=r"^invalid response \(.*\) after 2 attempts$"):
            asyncio.run(ask(server.base_url))
        assert server.stats()["statuses"][fault] == 2


@pytest.mark.parametrize("template", ["file:///tmp/{ytid}.m4a", "ftp://host/{ytid}", "{ytid}", "ytsearch:{ytid}",
                                      "http:///{ytid}"])
def test_a_url_template_yt_dlp_would_refuse_is_a_fetch_error_before_a_run(template: str) -> None:
    from audio_dialogues.fetch import FetchOptions
    from audio_dialogues.fetch.options import FetchError

    with pytest.raises(FetchError, match="must be an http:// or https:// URL"):
        FetchOptions(url_template=template)
    with pytest.raises(FetchError, match="proxy must be a URL"):
        FetchOptions(proxy="not a url")


@pytest.mark.parametrize("fault", ["html", "truncated", "nested", "long number", "list"])
def test_an_embeddings_answer_that_is_no_embeddings_list_is_an_embedder_error(fault: str) -> None:
    from audio_dialogues.generate.embedders import EmbedderError, openai_embedder
    from tests.openai_server import OpenAIServer

    with OpenAIServer() as server:
        server.embedding_fault = fault
        embed = openai_embedder("e", base_url=server.base_url, max_attempts=2)
        with pytest.raises(EmbedderError, match=r"\(model 'e'\) failed: invalid response \(.*\) after 2 attempts") \
                as raised:
            embed.embed(["a dog barks"])
        assert raised.value.__cause__ is not None
