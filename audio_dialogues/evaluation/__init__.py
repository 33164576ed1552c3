"""Scoring model answers as coco-caption does (CIDEr, BLEU-4, ROUGE-L)."""
