"""Writing dialogues in the chat formats of the audio language models that train on them."""

#: The formats ``export`` writes (named here, not in :mod:`.chat_formats`, so the CLI lists them without
#: importing the writers).
FORMATS = ("af-chat", "af3-chat", "qwen-audio", "hf-messages", "llama-factory", "openai-messages", "lhotse")
#: How ``openai-messages`` carries a clip: base64 ``input_audio`` (default) or a ``file://`` ``audio_url``.
OPENAI_AUDIO = ("inline", "url")
