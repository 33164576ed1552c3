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
