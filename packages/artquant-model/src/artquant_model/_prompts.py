"""Prompt strings of the original pipelines, byte-exact (see reference-mplug-owl2.md §8).

They live in a module without heavy imports so that `levels` can use them.
"""

from __future__ import annotations

#: Marks an image in a prompt string; `tokenizer_image_token` turns it into `IMAGE_TOKEN_INDEX`.
DEFAULT_IMAGE_TOKEN = "<|image|>"
#: The id that marks an image position in `input_ids` (never a real vocabulary id).
IMAGE_TOKEN_INDEX = -200

#: ArtQuant `src/evaluate/iqa_eval.py`: conversation template `mplug_owl2` (no system text) with
#: the answer prefix appended. Note the space, not a newline, before "ASSISTANT".
ARTQUANT_SCORE_PROMPT = (
    "USER: How would you rate the quality of this painting?\n<|image|>"
    " ASSISTANT: The quality of the painting is"
)
#: Q-Align `q_align/evaluate/scorer.py` (quality), also one-align's `score()`.
QALIGN_SCORE_PROMPT = (
    "USER: How would you rate the quality of this image?\n<|image|>\n"
    "ASSISTANT: The quality of the image is"
)
#: Q-Align scorer, aesthetics variant.
QALIGN_AESTHETICS_PROMPT = (
    "USER: How would you rate the aesthetics of this image?\n<|image|>\n"
    "ASSISTANT: The aesthetics of the image is"
)
#: A description prompt in the same template (the generation prompt of the 32k-vocabulary fixture).
DESCRIBE_PROMPT = "USER: <|image|>Describe this painting. ASSISTANT:"
