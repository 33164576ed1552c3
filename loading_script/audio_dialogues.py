"""Audio Dialogues loading script, for Hub dataset repos and datasets < 4 (``trust_remote_code=True``).

The builder itself lives in the ``audio-dialogues`` package (``pip install audio-dialogues``); this
file only exposes it under the name datasets looks for, so script-based and package-based loading
build exactly the same data::

    load_dataset("path/to/loading_script/audio_dialogues.py", "music", data_dir=..., audio_dir=...,
                 trust_remote_code=True)
"""

from audio_dialogues.dataset.builder import AudioDialogues, AudioDialoguesConfig  # noqa: F401
