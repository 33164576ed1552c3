"""Scoring model answers as coco-caption does (CIDEr, BLEU-4, ROUGE-L)."""

#: The tokenizers ``evaluate --tokenizer`` takes (named here, not in :mod:`.tokenizer`, which imports
#: pycocoevalcap, so the CLI lists them without importing it): ``python`` (pure Python) and ``ptb``
#: (pycocoevalcap's Java PTBTokenizer).
TOKENIZERS = ("python", "ptb")
