"""Test isolation: every run gets its own caches and can never reach a hub; fixtures for optional tools.

The variables are set before anything imports `datasets` or `huggingface_hub`, which read them at import.
The ``java``, ``torch`` and ``torchcodec`` fixtures skip a test whose tool is missing, or fail it when
``CI`` is set (see tests/tools.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from types import ModuleType

import pytest

from tests.tools import require_module, require_tool

_ROOT = tempfile.mkdtemp(prefix="audio-dialogues-tests-")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
os.environ["HF_HOME"] = os.path.join(_ROOT, "hf")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_ROOT, "hf", "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["AUDIO_DIALOGUES_CACHE"] = os.path.join(_ROOT, "clip-cache")


@pytest.fixture()
def java() -> str:
    """pycocoevalcap's Java tokenizer needs a JRE (apt-get install default-jre-headless)."""
    return require_tool("java", "pycocoevalcap's PTBTokenizer is a Java jar")


@pytest.fixture()
def torch() -> ModuleType:
    return require_module("torch", "DataLoader tests; pip install '.[decode]'")


@pytest.fixture()
def torchcodec() -> ModuleType:
    """datasets >= 4 decodes its own Audio feature with torchcodec (datasets 3.x has no such path)."""
    import datasets

    if int(datasets.__version__.split(".")[0]) < 4:
        pytest.skip(f"datasets {datasets.__version__} decodes Audio without torchcodec; the py311 env runs this")
    return require_module("torchcodec", "the datasets/torchcodec decode path; pip install '.[decode]'")
