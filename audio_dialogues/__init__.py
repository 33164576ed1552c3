"""Audio Dialogues (arXiv 2404.07616) as a typed `datasets` builder, with audio fetching and evaluation."""

__version__ = "0.1.0"
