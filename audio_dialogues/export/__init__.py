"""Writing dialogues in the chat formats of the audio language models that train on them.

The choices of the ``export`` command live here, not in :mod:`.chat_formats`, so the CLI lists them without
importing the writers.
"""

from ..audio.resolver import MISSING_AUDIO_POLICIES

#: The formats ``export`` writes.
FORMATS = ("af-chat", "af3-chat", "qwen-audio", "hf-messages", "llama-factory", "openai-messages", "lhotse")
#: How ``openai-messages`` carries a clip: base64 ``input_audio`` (default) or a ``file://`` ``audio_url``.
OPENAI_AUDIO = ("inline", "url")
#: What ``export`` does with a dialogue whose clip has no audio: the builder's policies but ``keep``. An export
#: is a list of audio files for a training framework to open; a dialogue kept without audio would name none.
EXPORT_MISSING_AUDIO_POLICIES = tuple(p for p in MISSING_AUDIO_POLICIES if p != "keep")
