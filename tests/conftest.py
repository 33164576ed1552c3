"""Test isolation: every run gets its own caches and can never reach a hub.

The variables are set before anything imports `datasets` or `huggingface_hub`, which read them at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_ROOT = tempfile.mkdtemp(prefix="audio-dialogues-tests-")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
os.environ["HF_HOME"] = os.path.join(_ROOT, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_ROOT, "hf", "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["AUDIO_DIALOGUES_CACHE"] = os.path.join(_ROOT, "clip-cache")
