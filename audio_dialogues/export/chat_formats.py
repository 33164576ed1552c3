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
    Audio Flamingo 3's training JSON: an array of ``{"id", "sound", "duration", "conversations"}``.
    ``sound`` is always a list of paths and the first human turn starts with ``<sound-1>\\n...<sound-N>\\n``
    (tag k is ``sound[k-1]``), ``duration`` one number (the clips' total): AF3's
    ``LazySupervisedDataset.__getitem__`` (``llava/data/dataset.py``) reads every turn only when
    ``sound`` is a list (a string keeps ``conversations[0:2]``), and its length grouping
    (``modality_lengths``) multiplies ``duration`` as a number.
``qwen-audio``
    JSON Lines ``{"id", "audio": [paths], "text"}``; ``text`` is the Qwen-Audio-Chat ChatML of the whole
    dialogue, every clip in the first user turn as Qwen's ``from_list_format`` writes it,
    ``Audio k:<audio>PATH</audio>\\n``, numbered across the conversation.
``hf-messages``
    JSON Lines ``{"id", "messages"}`` in the conversation shape transformers processors (Qwen2-Audio,
    Qwen2.5-Omni, Audio Flamingo 3's ``-hf`` port, Voxtral) read in ``apply_chat_template(...,
    tokenize=True)``: every content a list of parts, the clips as ``{"type": "audio", "path": ...}``
    parts of the first user message.
``llama-factory``
    JSON Lines ``{"id", "messages": [{"role", "content"}], "audios": [paths]}``, one ``<audio>`` per clip
    at the start of the first user message: what LLaMA-Factory (``sharegpt`` formatting) and ms-swift
    train on. LLaMA-Factory also needs a ``dataset_info.json`` entry naming the columns: it is written
    (merged into an existing file) beside the output.
``openai-messages``
    JSON Lines ``{"id", "messages"}`` in OpenAI chat-completions shape, the clips as content parts of
    the first user message: by default OpenAI's own ``{"type": "input_audio", "input_audio": {"data":
    <base64>, "format": "wav"|"mp3"}}`` (WAV and MP3 files as they are, any other clip decoded by this
    package's decoder and written as 16-bit WAV in memory), or with ``openai_audio="url"`` vLLM's
    ``{"type": "audio_url", "audio_url": {"url": "file://..."}}`` (no OpenAI type: vLLM reads it only
    when started with ``--allowed-local-media-path``).
``lhotse``
    A lhotse ``CutSet`` manifest (JSON Lines, gzipped when the name ends in ``.gz``): one cut per
    dialogue, id the dialogue id; each clip a recording and a supervision spanning it, whose ``custom``
    holds ``dialogue_id``, ``clip_index`` and the dialogue's ``turns``. A single clip is a ``MonoCut``;
    several (``comparison``) are a ``MixedCut`` of the clips one after another, one track per clip.

Export streams: one record at a time is formatted and written, so memory does not grow with the number
of dialogues. The output appears complete or not at all (written to a temporary file, then renamed).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from ..audio.resolver import AudioResolver
from ..dataset.resolution import (
    NO_AUDIO_REASONS,
    MissingAudioError,
    SplitReport,
    log_drops,
    resolve_records,
)
from ..errors import AudioDialoguesError, UsageError
from ..files import atomic_write
from ..sources.clips import Clip
from . import EXPORT_MISSING_AUDIO_POLICIES, FORMATS, OPENAI_AUDIO

logger = logging.getLogger(__name__)

#: Audio Flamingo's dataset names for the single-clip configs (chat.yaml: ``<name>-Dialog/train``).
AF_CHAT_DATASETS = {"audioset": "dialog_AudioSetSL", "music": "dialog_MusicCaps"}
#: Qwen-Audio-Chat's default system message.
QWEN_SYSTEM_PROMPT = "You are a helpful assistant."
#: Formats OpenAI's ``input_audio`` accepts, by file suffix; any other clip is converted to WAV.
_OPENAI_INLINE_FORMATS = {".wav": "wav", ".mp3": "mp3"}
#: The placeholder LLaMA-Factory (``mm_plugin.AUDIO_PLACEHOLDER``) and ms-swift put an audio where it stands.
AUDIO_PLACEHOLDER = "<audio>"


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
    #: Files written beside ``output`` for its consumer (LLaMA-Factory's ``dataset_info.json``).
    side_files: list[Path] = field(default_factory=list)
    #: How dialogues were written, where the format had to change something (clips converted to WAV).
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.format}: wrote {self.written} dialogues to {self.output}"
        if self.side_files:
            text += f" (and {', '.join(map(str, self.side_files))})"
        if self.notes:
            text += f"; {'; '.join(self.notes)}"
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

    def prepare(self, output: Path) -> None:
        """Check what the side files depend on before anything is written, so a refusal writes nothing."""

    def side_files(self, output: Path) -> list[Path]:
        """Files a consumer needs beside the output, written once it is complete; their paths."""
        return []

    def notes(self) -> list[str]:
        """What the summary should add about how the dialogues were written."""
        return []


class _AfChat(_Writer):
    separator = ",\n"

    def __init__(self, config: str, split: str, audio_root: Path) -> None:
        if config not in AF_CHAT_DATASETS:
            raise ExportError(f"af-chat: Audio Flamingo's chat manifest names one audio file per dialogue; config "
                              f"{config!r} has several clips per dialogue: use af3-chat, hf-messages, "
                              "llama-factory, qwen-audio, openai-messages or lhotse")
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
        # Always the list form, even for one clip: AF3 reads only the first exchange of a dialogue whose
        # ``sound`` is a string, every turn (``<sound-k>`` -> ``sound[k-1]``) of one whose ``sound`` is a list.
        tags = "".join(f"<sound-{k}>\n" for k in range(1, len(dialogue.paths) + 1))
        conversations = []
        for i, turn in enumerate(dialogue.turns):
            conversations.append({"from": "human", "value": (tags if i == 0 else "") + turn.user})
            conversations.append({"from": "gpt", "value": turn.assistant})
        out: dict = {"id": dialogue.id, "sound": [str(p) for p in dialogue.paths]}
        if all(d is not None for d in dialogue.durations):  # a number: AF3's length grouping multiplies it
            out["duration"] = round(sum(d for d in dialogue.durations if d is not None), 6)
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


class _HfMessages(_Writer):
    def __init__(self, system_prompt: str | None) -> None:
        self.system = system_prompt

    def item(self, index: int, dialogue: _Dialogue) -> str:
        messages: list[dict] = ([{"role": "system", "content": [{"type": "text", "text": self.system}]}]
                                if self.system else [])
        for i, turn in enumerate(dialogue.turns):
            audio = [{"type": "audio", "path": str(p)} for p in dialogue.paths] if i == 0 else []
            messages.append({"role": "user", "content": audio + [{"type": "text", "text": turn.user}]})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.assistant}]})
        return json.dumps({"id": dialogue.id, "messages": messages}, ensure_ascii=False) + "\n"


class _LlamaFactory(_Writer):
    def __init__(self, config: str, split: str, system_prompt: str | None) -> None:
        self.name = f"audio_dialogues_{config}_{split}"
        self.system = system_prompt
        self.info_path = Path("dataset_info.json")  # beside the output: set by prepare()
        self.info: dict = {}

    def item(self, index: int, dialogue: _Dialogue) -> str:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for i, turn in enumerate(dialogue.turns):
            user = (AUDIO_PLACEHOLDER * len(dialogue.paths) if i == 0 else "") + turn.user
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": turn.assistant}]
        row = {"id": dialogue.id, "messages": messages, "audios": [str(p) for p in dialogue.paths]}
        return json.dumps(row, ensure_ascii=False) + "\n"

    def prepare(self, output: Path) -> None:
        """Read the ``dataset_info.json`` beside ``output`` (LLaMA-Factory's ``dataset_dir``): its entries are kept."""
        self.info_path = output.parent / "dataset_info.json"
        if not self.info_path.exists():
            return
        try:
            self.info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ExportError(f"{self.info_path}: cannot add the {self.name!r} entry: not readable JSON ({err}); "
                              "move it away or fix it") from None
        if not isinstance(self.info, dict):
            raise ExportError(f"{self.info_path}: cannot add the {self.name!r} entry: not a JSON object")

    def side_files(self, output: Path) -> list[Path]:
        """Add this export's entry to ``dataset_info.json``, which names its columns and role tags."""
        tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
        if self.system:
            tags["system_tag"] = "system"
        self.info[self.name] = {"file_name": output.name, "formatting": "sharegpt",
                                "columns": {"messages": "messages", "audios": "audios"}, "tags": tags}
        with atomic_write(self.info_path) as f:
            f.write(json.dumps(self.info, indent=2, ensure_ascii=False) + "\n")
        return [self.info_path]


class _OpenAiMessages(_Writer):
    def __init__(self, system_prompt: str | None, audio: str) -> None:
        if audio not in OPENAI_AUDIO:
            raise UsageError(f"unknown openai_audio {audio!r}; expected one of {', '.join(OPENAI_AUDIO)}")
        self.system, self.audio = system_prompt, audio
        self.converted = 0

    def _audio_part(self, dialogue: _Dialogue, path: Path) -> dict:
        if self.audio == "url":
            return {"type": "audio_url", "audio_url": {"url": path.as_uri()}}
        fmt = _OPENAI_INLINE_FORMATS.get(path.suffix.lower())
        if fmt is not None:
            data = path.read_bytes()
        else:  # FLAC, Ogg, m4a, ...: OpenAI takes none of them; decoded once here and sent as WAV
            from ..dataset.decoding import AudioDecodeError, wav_bytes  # imports datasets: only when needed

            try:
                data, fmt = wav_bytes(str(path)), "wav"
            except AudioDecodeError as err:
                raise ExportError(f"openai-messages: dialogue {dialogue.id!r}: {err}") from None
            self.converted += 1
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": fmt}}

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

    def notes(self) -> list[str]:
        return [f"{self.converted} clips converted to WAV for input_audio"] if self.converted else []


class _Lhotse(_Writer):
    def __init__(self) -> None:
        try:
            import lhotse
        except ImportError:
            raise ExportError('lhotse: the lhotse package is not installed: pip install "audio-dialogues[lhotse]"') \
                from None
        self.lhotse = lhotse

    def item(self, index: int, dialogue: _Dialogue) -> str:
        lhotse = self.lhotse
        from lhotse.utils import fastcopy

        turns = [{"user": t.user, "assistant": t.assistant} for t in dialogue.turns]
        tracks = []
        for k, path in enumerate(dialogue.paths):
            try:
                recording = lhotse.Recording.from_file(path, recording_id=f"{dialogue.id}_{k}")
            except Exception as err:  # lhotse raises whatever its audio backends raise
                raise ExportError(f"lhotse: dialogue {dialogue.id!r}: lhotse cannot read {path}: {err}") from None
            supervision = lhotse.SupervisionSegment(
                id=f"{dialogue.id}_{k}", recording_id=recording.id, start=0.0, duration=recording.duration,
                channel=recording.channel_ids[0] if recording.num_channels == 1 else recording.channel_ids,
                custom={"dialogue_id": dialogue.id, "clip_index": k, "turns": turns})
            tracks.append(fastcopy(recording.to_cut(), id=f"{dialogue.id}_{k}", supervisions=[supervision]))
        if len(tracks) == 1:
            cut = fastcopy(tracks[0], id=dialogue.id)
        else:  # the clips one after another, each its own track (cut.tracks[k] is clip k, unmixed)
            offsets = [sum(t.duration for t in tracks[:k]) for k in range(len(tracks))]
            cut = lhotse.cut.MixedCut(id=dialogue.id, tracks=[lhotse.cut.MixTrack(cut=t, offset=o)
                                                             for t, o in zip(tracks, offsets, strict=True)])
        return json.dumps(cut.to_dict(), ensure_ascii=False) + "\n"


# --- export --------------------------------------------------------------------------------------


def _writer(fmt: str, config: str, split: str, audio_root: Path | None, system_prompt: str | None,
            openai_audio: str) -> _Writer:
    if fmt == "af-chat":
        return _AfChat(config, split, audio_root or Path("/"))
    if fmt == "af3-chat":
        return _Af3Chat()
    if fmt == "qwen-audio":
        return _QwenAudio(system_prompt)
    if fmt == "hf-messages":
        return _HfMessages(system_prompt)
    if fmt == "llama-factory":
        return _LlamaFactory(config, split, system_prompt)
    if fmt == "openai-messages":
        return _OpenAiMessages(system_prompt, openai_audio)
    if fmt == "lhotse":
        return _Lhotse()
    raise UsageError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


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
    openai_audio: str = "inline",
) -> ExportReport:
    """Write ``records`` (``annotations.Record``) of ``config``/``split`` to ``output`` in format ``fmt``.

    Args:
        resolver: finds each clip's local audio (``audio.resolver.AudioResolver`` or a function).
        missing_audio: ``drop`` (default) leaves out dialogues with a clip without audio and counts them;
            ``error`` stops at the first one, naming the record and clip.
        audio_root: ``af-chat`` only: the manifest's ``dataset_path``; names are relative to it
            (default: the resolver's first audio folder, else ``/``, i.e. absolute paths).
        system_prompt: ``qwen-audio`` (default Qwen's "You are a helpful assistant."), ``hf-messages``,
            ``llama-factory`` and ``openai-messages`` (default none).
        openai_audio: ``inline`` (base64 ``input_audio``, any clip as WAV or MP3) or ``url`` (``file://``
            references, which vLLM reads when started with ``--allowed-local-media-path``).
    """
    if missing_audio not in EXPORT_MISSING_AUDIO_POLICIES:
        raise UsageError(f"unknown missing_audio {missing_audio!r}; expected one of "
                         f"{', '.join(EXPORT_MISSING_AUDIO_POLICIES)}")
    resolve = resolver if isinstance(resolver, AudioResolver) or not hasattr(resolver, "resolve") else resolver.resolve
    if audio_root is None and isinstance(resolver, AudioResolver) and resolver.index.folders:
        audio_root = resolver.index.folders[0]
    root = Path(audio_root).absolute() if audio_root is not None else None
    writer = _writer(fmt, config, split, root, system_prompt, openai_audio)
    output = Path(output)
    writer.prepare(output)
    written = 0
    report = SplitReport()
    with atomic_write(output, binary=True) as raw:
        # lhotse reads a gzipped manifest by its name; the other consumers read plain text only.
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if fmt == "lhotse" and output.suffix == ".gz" else None
        f = io.TextIOWrapper(gz or raw, encoding="utf-8", newline="")
        f.write(writer.header())
        try:
            for record, paths in resolve_records(records, resolve, missing_audio, report):
                files = [p for p in paths if p is not None]
                assert len(files) == len(paths)  # "drop" and "error" yield no clip without audio
                dialogue = _Dialogue(record.id, list(record.turns), [Path(p).absolute() for p in files],
                                     [clip.duration_s for clip in record.clips])
                _write_item(f, writer, written, dialogue)
                written += 1
        except MissingAudioError as err:  # not an output problem: keep it from being reported as one
            raise ExportError(f"{err} (missing_audio='error'; 'drop' leaves such dialogues out)") from None
        if written == 0 and report.dropped:  # an empty export is a mistake, never a file to train on
            fixes = []
            if set(report.dropped) & NO_AUDIO_REASONS:
                fixes.append("pass audio folders (--audio-dir) or fetch the clips first")
            if set(report.dropped) - NO_AUDIO_REASONS:
                fixes.append("replace the files that cannot serve (--missing-audio error names the first record "
                             "and file)")
            raise ExportError(f"{config}/{split}: no dialogue has usable local audio (dropped "
                              f"{_reasons(report.dropped)}); {'; '.join(fixes)}")
        f.write(writer.footer(written))
        f.flush()
        f.detach()
        if gz is not None:
            gz.close()
    side_files = writer.side_files(output)
    log_drops(f"{fmt} export of {config}/{split}", report)
    return ExportReport(fmt, output, written, sum(report.dropped.values()), report.missing_clips, report.dropped,
                        side_files, writer.notes())


def _write_item(f: IO[str], writer: _Writer, index: int, dialogue: _Dialogue) -> None:
    if index:
        f.write(writer.separator)
    f.write(writer.item(index, dialogue))
