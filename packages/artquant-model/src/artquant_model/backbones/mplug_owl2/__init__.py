"""mPLUG-Owl2, the backbone of ArtQuant, Q-Align / OneAlign and DeQA-Score.

Its configuration, modeling and processing files (the transformers layout), the original
LLaMA-2 tokenizer rebuild and :class:`MPLUGOwl2Backbone`, the backbone-layer view of it.
"""
