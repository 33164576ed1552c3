"""Writing dialogues in the chat formats that audio language models train on.

Formats (audio paths are the resolved local files, absolute). Records are resolved exactly as the
builder resolves them (:func:`audio_dialogues.dataset.resolution.resolve_records`, the same
``missing_audio`` policy and reasons). A local file that holds more than its clip (a whole video, or a
``<ytid>_<start>_<end>`` file longer than its name says) is never handed to a model as the clip: its
window is cut into the clip cache once, and that file is what the export names.

``af-chat``
    Audio Flamingo's chat manifest (NVIDIA/audio-flamingo ``chat/data/prepare_each_dataset.py``): one
    JSON object ``{"dataset_path", "split", "split_path", "flamingo_task", "data", "total_num"}`` with
    ``data = {"0": {"name", "dialogue": [{"user", "assistant"}]}, ...}``; the audio file is
    ``os.path.join(dataset_path, split_path, name)``. One clip per dialogue, so ``comparison`` is refused.
    ``flamingo_task`` is ``dialog_AudioSetSL-Dialog`` / ``dialog_MusicCaps-Dialog``, the names Audio
    Flamingo's ``chat.yaml`` blends.
``af3-chat``
    Audio Flamingo 3's training JSON: an array of ``{"id", "sound", "duration", "conversations"}``;
    ``sound`` is a path and the first human turn starts with ``<sound>\\n``, or, for several clips, a
    list of paths and ``<sound-1>\\n<sound-2>\\n...`` (tag k is ``sound[k-1]``).
``qwen-audio``
    JSON Lines ``{"id", "audio": [paths], "text"}``; ``text`` is the Qwen-Audio-Chat ChatML of the whole
    dialogue, every clip in the first user turn as Qwen's ``from_list_format`` writes it,
    ``Audio k:<audio>PATH</audio>\\n``, numbered across the conversation.
``openai-messages``
    JSON Lines ``{"id", "messages"}`` in OpenAI chat-completions shape, the clips as content parts of
    the first user message: file references ``{"type": "audio_url", "audio_url": {"url": "file://..."}}``
    (what vLLM and other OpenAI-compatible servers accept), or with ``openai_audio="inline"`` OpenAI's
    own ``{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav"|"mp3"}}``.

Export streams: one record at a time is formatted and written, so memory does not grow with the number
of dialogues. The output appears complete or not at all (written to a temporary file, then renamed).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from ..dataset.local_audio import AudioResolver
from ..dataset.resolution import (
    NO_AUDIO,
    NO_AUDIO_NO_TIMES,
    MissingAudioError,
    SplitReport,
    log_drops,
    resolve_records,
)
from ..errors import AudioDialoguesError
from ..files import atomic_write
from ..sources.clips import Clip

logger = logging.getLogger(__name__)

FORMATS = ("af-chat", "af3-chat", "qwen-audio", "openai-messages")
MISSING_AUDIO_POLICIES = ("drop", "error")
OPENAI_AUDIO = ("url", "inline")
#: Audio Flamingo's dataset names for the single-clip configs (chat.yaml: ``<name>-Dialog/train``).
AF_CHAT_DATASETS = {"audioset": "dialog_AudioSetSL", "music": "dialog_MusicCaps"}
#: Qwen-Audio-Chat's default system message.
QWEN_SYSTEM_PROMPT = "You are a helpful assistant."
#: Formats OpenAI's ``input_audio`` accepts, by file suffix.
_OPENAI_INLINE_FORMATS = {".wav": "wav", ".mp3": "mp3"}


class ExportError(AudioDialoguesError, ValueError):
    """A dialogue that cannot be written in the requested format; the message says which and why."""


class Resolver(Protocol):
    def resolve(self, clip: Clip) -> Path | None: ...


@dataclass(frozen=True)
class ExportReport:
    format: str
    output: Path
    written: int
    #: Dialogues left out because some of their clips have no usable local audio (``missing_audio="drop"``).
    dropped: int
    #: Clips of those dialogues without usable audio.
    missing_clips: int
    #: ``dropped`` by reason (``no audio found``, ``undecodable audio``, ...), as the builder counts them.
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.format}: wrote {self.written} dialogues to {self.output}"
        if self.dropped:
            text += (f"; dropped {self.dropped}: {_reasons(self.reasons)} ({self.missing_clips} clips without "
                     "usable audio)")
        return text


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())


@dataclass(frozen=True)
class _Dialogue:
    """One record with its audio resolved: what every format is written from."""

    id: str
    turns: list  # of annotations.Turn: .user, .assistant
    paths: list[Path]
    durations: list[float | None]


# --- one writer per format: header, one item per dialogue, footer --------------------------------


class _Writer:
    separator = ""

    def header(self) -> str:
        return ""

    def item(self, index: int, dialogue: _Dialogue) -> str:
        raise NotImplementedError

    def footer(self, count: int) -> str:
        return ""


class _AfChat(_Writer):
    separator = ",\n"

    def __init__(self, config: str, split: str, audio_root: Path) -> None:
        if config not in AF_CHAT_DATASETS:
            raise ExportError(f"af-chat: Audio Flamingo's chat manifest names one audio file per dialogue; config "
                              f"{config!r} has several clips per dialogue: use af3-chat, qwen-audio or "
                              "openai-messages")
        self.config, self.split, self.root = config, split, audio_root

    def header(self) -> str:
        head = {"dataset_path": str(self.root), "split": self.split, "split_path": "./",
                "flamingo_task": f"{AF_CHAT_DATASETS[self.config]}-Dialog"}
        return json.dumps(head)[:-1] + ', "data": {\n'

    def item(self, index: int, dialogue: _Dialogue) -> str:
        if len(dialogue.paths) != 1:
            raise ExportError(f"af-chat: dialogue {dialogue.id!r} has {len(dialogue.paths)} clips; the format "
                              "holds one")
        name = os.path.relpath(dialogue.paths[0], self.root)
        body = {"name": name, "dialogue": [{"user": t.user, "assistant": t.assistant} for t in dialogue.turns]}
        return f"{json.dumps(str(index))}: {json.dumps(body, ensure_ascii=False)}"

    def footer(self, count: int) -> str:
        return f'\n}}, "total_num": {count}}}\n'


class _Af3Chat(_Writer):
    separator = ",\n"

    def header(self) -> str:
        return "[\n"

    def item(self, index: int, dialogue: _Dialogue) -> str:
        paths = [str(p) for p in dialogue.paths]
        if len(paths) == 1:
            sound: str | list[str] = paths[0]
            prefix = "<sound>\n"
        else:
            sound = paths
            prefix = "".join(f"<sound-{k}>\n" for k in range(1, len(paths) + 1))
        conversations = []
        for i, turn in enumerate(dialogue.turns):
            conversations.append({"from": "human", "value": (prefix if i == 0 else "") + turn.user})
            conversations.append({"from": "gpt", "value": turn.assistant})
        out: dict = {"id": dialogue.id, "sound": sound}
        if all(d is not None for d in dialogue.durations):
            out["duration"] = dialogue.durations[0] if len(paths) == 1 else dialogue.durations
        out["conversations"] = conversations
        return json.dumps(out, ensure_ascii=False)

    def footer(self, count: int) -> str:
        return "\n]\n"


class _QwenAudio(_Writer):
    def __init__(self, system_prompt: str | None) -> None:
        self.system = QWEN_SYSTEM_PROMPT if system_prompt is None else system_prompt

    def item(self, index: int, dialogue: _Dialogue) -> str:
        audio = "".join(f"Audio {k}:<audio>{p}</audio>\n" for k, p in enumerate(dialogue.paths, start=1))
        text = f"<|im_start|>system\n{self.system}<|im_end|>\n"
        for i, turn in enumerate(dialogue.turns):
            user = (audio if i == 0 else "") + turn.user
            text += f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{turn.assistant}<|im_end|>\n"
        row = {"id": dialogue.id, "audio": [str(p) for p in dialogue.paths], "text": text}
        return json.dumps(row, ensure_ascii=False) + "\n"


class _OpenAiMessages(_Writer):
    def __init__(self, system_prompt: str | None, audio: str) -> None:
        if audio not in OPENAI_AUDIO:
            raise ValueError(f"unknown openai_audio {audio!r}; expected one of {', '.join(OPENAI_AUDIO)}")
        self.system, self.audio = system_prompt, audio

    def _audio_part(self, dialogue: _Dialogue, path: Path) -> dict:
        if self.audio == "url":
            return {"type": "audio_url", "audio_url": {"url": path.as_uri()}}
        fmt = _OPENAI_INLINE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ExportError(f"openai-messages: dialogue {dialogue.id!r}: {path} is {path.suffix or 'untyped'} "
                              "audio, but OpenAI's input_audio takes wav or mp3; convert it, or export file "
                              "references (openai_audio='url')")
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode("ascii"),
                                                       "format": fmt}}

    def item(self, index: int, dialogue: _Dialogue) -> str:
        messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        for i, turn in enumerate(dialogue.turns):
            if i == 0:
                parts = [self._audio_part(dialogue, p) for p in dialogue.paths]
                messages.append({"role": "user", "content": parts + [{"type": "text", "text": turn.user}]})
            else:
                messages.append({"role": "user", "content": turn.user})
            messages.append({"role": "assistant", "content": turn.assistant})
        return json.dumps({"id": dialogue.id, "messages": messages}, ensure_ascii=False) + "\n"


# --- export --------------------------------------------------------------------------------------


def _writer(fmt: str, config: str, split: str, audio_root: Path | None, system_prompt: str | None,
            openai_audio: str) -> _Writer:
    if fmt == "af-chat":
        return _AfChat(config, split, audio_root or Path("/"))
    if fmt == "af3-chat":
        return _Af3Chat()
    if fmt == "qwen-audio":
        return _QwenAudio(system_prompt)
    if fmt == "openai-messages":
        return _OpenAiMessages(system_prompt, openai_audio)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def export_chat(
    records: Iterable,
    fmt: str,
    output: str | os.PathLike,
    *,
    config: str,
    split: str,
    resolver: Resolver | Callable[[Clip], Path | None],
    missing_audio: str = "drop",
    audio_root: str | os.PathLike | None = None,
    system_prompt: str | None = None,
    openai_audio: str = "url",
) -> ExportReport:
    """Write ``records`` (``annotations.Record``) of ``config``/``split`` to ``output`` in format ``fmt``.

    Args:
        resolver: finds each clip's local audio (``local_audio.AudioResolver`` or a function).
        missing_audio: ``drop`` (default) leaves out dialogues with a clip without audio and counts them;
            ``error`` stops at the first one, naming the record and clip.
        audio_root: ``af-chat`` only: the manifest's ``dataset_path``; names are relative to it
            (default: the resolver's first audio folder, else ``/``, i.e. absolute paths).
        system_prompt: ``qwen-audio`` (default Qwen's "You are a helpful assistant.") and
            ``openai-messages`` (default none).
        openai_audio: ``url`` (file references) or ``inline`` (base64 ``input_audio``, wav/mp3 only).
    """
    if missing_audio not in MISSING_AUDIO_POLICIES:
        raise ValueError(f"unknown missing_audio {missing_audio!r}; expected one of "
                         f"{', '.join(MISSING_AUDIO_POLICIES)}")
    resolve = resolver if isinstance(resolver, AudioResolver) or not hasattr(resolver, "resolve") else resolver.resolve
    if audio_root is None and isinstance(resolver, AudioResolver) and resolver.index.folders:
        audio_root = resolver.index.folders[0]
    root = Path(audio_root).absolute() if audio_root is not None else None
    writer = _writer(fmt, config, split, root, system_prompt, openai_audio)
    output = Path(output)
    written = 0
    report = SplitReport()
    with atomic_write(output) as f:
        f.write(writer.header())
        try:
            for record, paths in resolve_records(records, resolve, missing_audio, report):
                dialogue = _Dialogue(record.id, list(record.turns), [Path(p).absolute() for p in paths],
                                     [clip.duration_s for clip in record.clips])
                _write_item(f, writer, written, dialogue)
                written += 1
        except MissingAudioError as err:  # not an output problem: keep it from being reported as one
            raise ExportError(f"{err} (missing_audio='error'; 'drop' leaves such dialogues out)") from None
        if written == 0 and report.dropped:  # an empty export is a mistake, never a file to train on
            fixes = []
            if set(report.dropped) & {NO_AUDIO, NO_AUDIO_NO_TIMES}:
                fixes.append("pass audio folders (--audio-dir) or fetch the clips first")
            if set(report.dropped) - {NO_AUDIO, NO_AUDIO_NO_TIMES}:
                fixes.append("replace the files that cannot serve (--missing-audio error names the first record "
                             "and file)")
            raise ExportError(f"{config}/{split}: no dialogue has usable local audio (dropped "
                              f"{_reasons(report.dropped)}); {'; '.join(fixes)}")
        f.write(writer.footer(written))
    log_drops(f"{fmt} export of {config}/{split}", report)
    return ExportReport(fmt, output, written, sum(report.dropped.values()), report.missing_clips, report.dropped)


def _write_item(f: IO[str], writer: _Writer, index: int, dialogue: _Dialogue) -> None:
    if index:
        f.write(writer.separator)
    f.write(writer.item(index, dialogue))
