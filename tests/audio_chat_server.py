"""A chat-completions server that *listens*: it decodes every clip a request carries and answers from it.

Audio language models cannot run here, so ``predict`` is tested through the protocol against this server
(a subclass of :class:`tests.openai_server.OpenAIServer`, with its faults, counters and ``reject_audio``).
Each answer states what the server heard and what it was told, so a test can recompute it from the
dataset and prove that the right clips, the right history and the right question reached each turn:

``heard 2 clips: 10.000 s 16000 Hz -23.4 dBFS | 10.000 s 16000 Hz -30.0 dBFS; turn 1; after: <the last
assistant message or "-">; asked: <the last user message>``

Clips come as ``input_audio`` parts (base64, decoded with soundfile) or ``audio_url`` parts (``file://``
paths, read from disk as vLLM does). A judge request (a system message starting with the judge's
instruction) is answered by :func:`judge_answer`.

Run as a script (``python -m tests.audio_chat_server``) it serves from its own process and prints ``PORT <n>``.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import soundfile as sf

from audio_dialogues.llm.client import text_of
from tests.openai_server import OpenAIServer, main


def describe_clip(samples: np.ndarray, rate: int) -> str:
    """What the server says of one clip: duration, rate and RMS level (mono mix)."""
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    rms = float(np.sqrt(np.mean(np.square(mono.astype(np.float64))))) if len(mono) else 0.0
    return f"{len(mono) / rate:.3f} s {rate} Hz {20 * np.log10(max(rms, 1e-9)):.1f} dBFS"


def heard(part: dict[str, Any]) -> tuple[str, int]:
    """The description of one audio part and its channel count."""
    if part["type"] == "input_audio":
        assert part["input_audio"]["format"] == "wav", part["input_audio"]["format"]
        data, rate = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
    else:
        url = urlparse(part["audio_url"]["url"])
        assert url.scheme == "file", url
        data, rate = sf.read(unquote(url.path), dtype="float32")
    return describe_clip(data, rate), 1 if data.ndim == 1 else data.shape[1]


def listening_answer(messages: list[dict[str, Any]]) -> str:
    first_user = next(m for m in messages if m["role"] == "user")
    parts = [p for p in first_user["content"] if p.get("type") != "text"] if not isinstance(
        first_user["content"], str) else []
    clips = [heard(p) for p in parts]
    turn = sum(m["role"] == "user" for m in messages) - 1
    after = next((text_of(m["content"]) for m in reversed(messages) if m["role"] == "assistant"), "-")
    channels = {c for _, c in clips}
    return (f"heard {len(clips)} clips: {' | '.join(d for d, _ in clips)}; channels {sorted(channels)}; turn {turn}; "
            f"after: {after}; asked: {text_of(messages[-1]['content'])}")


#: What the judge server's words start with: the judge's instruction (see evaluation/judge.py).
JUDGE_MARK = "You grade answers"
#: An answer containing this word gets no score from the test judge (a judge that answers off format).
UNSCORABLE = "UNSCORABLE"
#: The test judge favours the answer shown first by this much, as real judges do: swapping cancels it.
POSITION_BIAS = 1.0


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def judge_scores(content: str, answer: str) -> float:
    """The test judge's score of an answer, without position bias: 1 + 8 x the share of its words the clip's
    content or the reference holds."""
    words = _words(answer)
    return 1.0 + 8.0 * (len(words & _words(content)) / len(words) if words else 0.0)


def judge_answer(prompt: str) -> str:
    """Scores for the two answers of a judge prompt, from the clip content and the other answer it shows."""
    content = prompt.split("## What the clip contains", 1)[1].split("##", 1)[0]
    one = prompt.split("## Answer 1", 1)[1].split("## Answer 2", 1)[0].strip()
    two = prompt.split("## Answer 2", 1)[1].split("##", 1)[0].strip()
    if UNSCORABLE in one or UNSCORABLE in two:
        return "I would rather not grade these."
    s1 = judge_scores(content + " " + two, one) + POSITION_BIAS
    s2 = judge_scores(content + " " + one, two)
    return f'{{"answer_1": {s1:.2f}, "answer_2": {s2:.2f}}}'


class AudioChatServer(OpenAIServer):
    def reset(self) -> None:
        super().reset()
        #: The user message of every judge request, in arrival order.
        self.judge_prompts: list[str] = []

    def answer(self, messages: list[dict[str, Any]], name: str) -> str:
        if messages and messages[0]["role"] == "system" and text_of(messages[0]["content"]).startswith(JUDGE_MARK):
            self.judge_prompts.append(text_of(messages[-1]["content"]))
            return judge_answer(self.judge_prompts[-1])
        return listening_answer(messages)


def expected_answer(paths: list[Path], rate: int, history: list[str], question: str, turn: int) -> str:
    """What :class:`AudioChatServer` answers for these clip files resampled to ``rate``: computed by the test
    from the files with the package's decoder, independently of what ``predict`` sent."""
    from audio_dialogues.dataset.decoding import decode_file

    described = []
    for path in paths:
        samples, got = decode_file(str(path), rate)
        pcm = np.round(np.clip(samples, -1, 1) * 32767) / 32768  # what a 16-bit WAV holds
        described.append(describe_clip(pcm.astype(np.float32), got))
    after = history[-1] if history else "-"
    return (f"heard {len(paths)} clips: {' | '.join(described)}; channels [1]; turn {turn}; after: {after}; "
            f"asked: {question}")


if __name__ == "__main__":
    main(AudioChatServer)
