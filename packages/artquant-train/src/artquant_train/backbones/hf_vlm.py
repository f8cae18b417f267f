"""The vision-language families of the generic backbone as the trainer sees them, through
transformers' ``AutoModelForImageTextToText``: the Qwen-VL families (``qwen2_vl``,
``qwen2_5_vl``, ``qwen3_vl``, ``qwen3_5``), Gemma 3 (``gemma3``) and InternVL (``internvl``).

One implementation for all; what differs between families comes from two places. The scoring
side's family adapter (:func:`artquant_model.backbones.hf_vlm.families.vlm_family`) says how a
picture is written into the text (the template's placeholder and what the family's processor
writes for it), how pictures become pixels and which picture inputs and token-type marks the
model takes; the training side adds where the vision tower and the projector sit, which
modules LoRA skips and the default resolution (:class:`HFVisionLanguageTraining` for the Qwen
families, :class:`Gemma3Training`, :class:`InternVLTraining`).

* **Conversations** are rendered with the tokenizer's own chat template, as the scoring
  backbone (:class:`artquant_model.backbones.hf_vlm.HFVisionLanguageBackbone`) renders its
  prompt: the picture then the question in the user turn, the generation prompt with thinking
  off (``enable_thinking=False``, so a thinking template writes its empty think block into the
  prompt, never into the labels), then the answer and the template's end-of-turn token. The
  template's picture placeholder is replaced by what the family's processor writes for a
  picture of one token (Gemma 3: blank lines and start/end-of-image tokens around it; InternVL:
  ``<img>``/``</img>``). The text is tokenised once, with character offsets; a token is
  supervised when it lies inside an answer or its end-of-turn token, and the level token is the
  token that starts at the space before the level word. Both are read from the rendered
  tokens, not assumed.
* **Pictures** follow ``model.resolution``: by default fixed (Qwen: 448 px, 256 picture
  tokens; Gemma 3 and InternVL: one tile of the vision tower's size, padded to a square), so
  every sample has the same length (see the README), or native (each picture its own token
  count). A row holds one picture token until collation, which repeats it once per token of
  that picture and pads the rows on the right. The release's spec records the resolution, so
  the SDK scores as the run trained.
* **The loss** runs the language model to its last hidden states and applies the LM head only
  at the positions that predict supervised tokens
  (:func:`artquant_train.losses.supervised_positions`), never the full ``B x L x V`` logits.
* **Trainable parts** (defaults): LoRA on every linear layer of the language model, the
  projector (Qwen's merger, Gemma 3's and InternVL's ``multi_modal_projector``) trained in full,
  the vision tower frozen. With LoRA, fully trained modules are peft ``modules_to_save``, so the
  release is a plain peft adapter folder that ``PeftModel.from_pretrained`` restores completely.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from artquant_train.backbones._base import Encoder, TrainingBackbone
from artquant_train.checkpointing import atomic_directory
from artquant_train.config import TemplateConfig, TrainConfig
from artquant_train.conversation import EncodedConversation, _turn_fields
from artquant_train.data import level_positions_from_rank
from artquant_train.errors import AnswerFormatError, LevelTokenError, SampleError, TrainError
from artquant_train.losses import (
    IGNORE_INDEX,
    KLMode,
    LossSums,
    packed_loss_sums,
    supervised_positions,
)
from artquant_train.modeling import TrainingForward, core_model, enable_checkpointing

if TYPE_CHECKING:
    from artquant_model.backbones.hf_vlm.families import VLMFamily

logger = logging.getLogger(__name__)

#: The training data's picture marker (removed from the text; the template places the picture).
DATA_IMAGE_TOKEN = "<|image|>"
#: Language-model linear layers of the Qwen-VL families: attention, MLP and Qwen3.5's
#: linear-attention projections (its per-head gate inputs ``in_proj_a/b`` are left out).
QWEN_LM_LINEARS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "in_proj_qkv",
    "in_proj_z",
    "out_proj",
)
#: Gemma 3's and InternVL's language models (Gemma 3, Qwen2) have only attention and MLP linears.
LM_LINEARS = QWEN_LM_LINEARS[:7]
_VISUAL = "model.visual"
_PROJECTORS = ("model.visual.merger", "model.visual.deepstack_merger_list")
_TOWER = "model.vision_tower"
_PROJECTOR = "model.multi_modal_projector"
_LLM = "model.language_model"
_EMBEDDINGS = ("model.language_model.embed_tokens", "lm_head")
_MARKER = "ARTQUANTANSWERMARKER"
#: The default training resolution (pixels per side, fixed mode): see the README for why.
TRAIN_RESOLUTION = 448


def end_of_turn(tokenizer: Any) -> tuple[str, str]:
    """What the chat template writes after an assistant's answer: ``(supervised, rest)``.

    For the Qwen templates this is ``("<|im_end|>", "\\n")``: the end-of-turn token is
    supervised (the model learns to stop), the newline after it is not.

    Raises:
        TrainError: the template does not write an assistant's answer verbatim.
    """
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": _MARKER}]},
    ]
    text = str(tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=False))
    where = text.rfind(_MARKER)
    if where < 0:
        raise TrainError("the chat template does not write the assistant's answer as given")
    suffix = text[where + len(_MARKER) :]
    supervised = suffix.rstrip()
    return supervised, suffix[len(supervised) :]


def _rounds(conversation: Sequence[Any]) -> list[tuple[str, str]]:
    """``(question, answer)`` per round, the data's picture marker removed from the text."""
    turns = [_turn_fields(turn) for turn in conversation]
    if len(turns) < 2 or len(turns) % 2:
        raise SampleError(
            f"a conversation needs user/assistant pairs, got {len(turns)} turn(s): "
            f"{[role for role, _ in turns]}"
        )
    images = sum(value.count(DATA_IMAGE_TOKEN) for _, value in turns)
    if images > 1:
        raise SampleError(f"a sample may hold one {DATA_IMAGE_TOKEN}, this one has {images}")
    rounds = []
    for index in range(0, len(turns), 2):
        (user, question), (assistant, answer) = turns[index], turns[index + 1]
        if user not in ("human", "user") or assistant not in ("gpt", "assistant"):
            raise SampleError(
                f"turns {index} and {index + 1} must be user then assistant, got {user!r} then "
                f"{assistant!r}"
            )
        rounds.append((question.replace(DATA_IMAGE_TOKEN, "").strip(), answer.strip()))
    return rounds


def encode_chat(
    conversation: Sequence[Any],
    tokenizer: Any,
    template: TemplateConfig | None = None,
    *,
    score_levels: tuple[Sequence[int], Sequence[int]] | None = None,
    level_prefix: str = "",
    max_length: int | None = None,
    image_token_id: int,
    system_prompt: str | None = None,
    picture: tuple[str, str] | None = None,
) -> EncodedConversation:
    """Tokenise a conversation with the tokenizer's chat template, answers supervised.

    The picture goes first in the first user turn (one picture token, expanded at collation).
    Each round's prompt is the template's rendering of the conversation so far with the
    generation prompt and thinking off, the picture placeholder replaced as ``picture`` says;
    the answer follows with the template's end-of-turn text.

    Args:
        conversation: the sample's turns (``from``/``value`` or ``role``/``content``).
        tokenizer: a fast tokenizer with a chat template.
        template: unused (mPLUG-Owl2's text template); kept for the encoder signature.
        score_levels: ``(prefix_ids, level_ids)`` for a score sample, else ``None``.
        level_prefix: the text before the level word in the first answer.
        max_length: keep at most this many ids (before the picture's expansion).
        image_token_id: the picture token's id.
        system_prompt: a system message, ``None`` for the template's default.
        picture: ``(placeholder, picture_text)``: the text the template writes for a picture
            and what the family's processor writes instead for a picture of one token
            (:meth:`~artquant_model.backbones.hf_vlm.families.VLMFamily.placeholder` /
            :meth:`~artquant_model.backbones.hf_vlm.families.VLMFamily.picture_text`); ``None``
            keeps the template's text (the Qwen families, whose placeholder is the picture
            token).

    Returns:
        The ids (one ``image_token_id``), labels, answer ranges and level index.

    Raises:
        AnswerFormatError: a score answer lacks the prefix, or the token after it is not a
            level word.
        LevelTokenError: no token starts at the level word.
        SampleError: bad turns, a token across the prompt/answer boundary, or truncation that
            would cut the level token or the picture.
    """
    supervised_end, rest = end_of_turn(tokenizer)
    messages: list[dict[str, Any]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    text = ""
    spans: list[tuple[int, int]] = []
    level_char: int | None = None
    for number, (question, answer) in enumerate(_rounds(conversation)):
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if number == 0:
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        prompt = str(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
            )
        )
        if picture is not None:
            prompt = prompt.replace(*picture)
        if not prompt.startswith(text):
            raise SampleError(
                "the chat template renders earlier rounds differently once a later one is "
                "added; train multi-round conversations on another template"
            )
        start = len(prompt)
        if number == 0 and score_levels is not None:
            where = answer.find(level_prefix)
            if where < 0:
                raise AnswerFormatError(
                    f"score answer {answer!r} does not contain the level prefix "
                    f"{level_prefix!r}; score samples must answer '{level_prefix} <level>.'"
                )
            level_char = start + where + len(level_prefix)
        text = prompt + answer + supervised_end
        spans.append((start, len(text)))
        text += rest
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [int(i) for i in encoded["input_ids"]]
    labels = [IGNORE_INDEX] * len(ids)
    ranges: list[list[int]] = [[-1, -1] for _ in spans]
    level_index: int | None = None
    for index, (begin, end) in enumerate(encoded["offset_mapping"]):
        for number, (low, high) in enumerate(spans):
            if begin < high and end > low and not (low <= begin and end <= high):
                raise SampleError(
                    f"token {tokenizer.convert_ids_to_tokens(ids[index])!r} crosses the start "
                    "or end of an answer; the prompt and answer cannot be separated"
                )
            if low <= begin and end <= high and end > begin:
                labels[index] = ids[index]
                ranges[number] = [index if ranges[number][0] < 0 else ranges[number][0], index + 1]
        if level_char is not None and begin == level_char and end > begin:
            level_index = index
    if score_levels is not None:
        if level_index is None:
            raise LevelTokenError(
                f"no token starts at the level word after {level_prefix!r}: "
                f"{text[level_char or 0 :][:40]!r}"
            )
        if ids[level_index] not in score_levels[1]:
            word, *allowed = tokenizer.convert_ids_to_tokens([ids[level_index], *score_levels[1]])
            raise AnswerFormatError(
                f"the token after the level prefix {level_prefix!r} is {word!r}, not a level "
                f"word; allowed tokens: {allowed}"
            )
    if ids.count(image_token_id) != 1:
        raise SampleError(
            f"the chat template wrote {ids.count(image_token_id)} picture placeholders for one "
            "picture"
        )
    if max_length is not None and len(ids) > max_length:
        if level_index is not None and level_index >= max_length:
            raise SampleError(
                f"max_length {max_length} would cut the level token at position {level_index}"
            )
        if ids.index(image_token_id) >= max_length:
            raise SampleError(f"max_length {max_length} would cut the picture")
        ids, labels = ids[:max_length], labels[:max_length]
        ranges = [[s, min(e, max_length)] for s, e in ranges if s < max_length]
    return EncodedConversation(
        tuple(ids), tuple(labels), tuple((s, e) for s, e in ranges), level_index
    )


def collate_chat(
    rows: Sequence[dict[str, Any]],
    *,
    pad_token_id: int,
    image_token_id: int,
    merge_size: int,
    family: VLMFamily | None = None,
) -> dict[str, Any]:
    """Expand each row's picture token to its token count and pad on the right.

    Args:
        rows: :class:`~artquant_train.data.TrainingDataset` rows whose ``image`` is one
            picture of the family's batch type (a
            :class:`~artquant_model.backbones.hf_vlm.VisionBatch` for Qwen, a
            :class:`~artquant_model.TileBatch` for Gemma 3 and InternVL).
        pad_token_id: the padding id.
        image_token_id: the picture token's id.
        merge_size: patches merged per side into one language-model token (Qwen).
        family: the scoring side's
            :class:`~artquant_model.backbones.hf_vlm.families.VLMFamily` (its token-type key
            and picture inputs); ``None`` for the Qwen families.

    Returns:
        ``input_ids`` / ``labels`` / ``attention_mask`` ``[B, T]``, the family's token-type
        marks ``[B, T]`` (Qwen ``mm_token_type_ids``, Gemma 3 ``token_type_ids``, 1 on picture
        tokens), its picture inputs (``pixel_values`` in row order and, for Qwen,
        ``image_grid_thw`` ``[B, 3]``), ``level_rank`` ``[B]``, ``level_probs`` ``[B, K]``,
        ``index`` ``[B]``.

    Raises:
        ValueError: no rows.
    """
    from artquant_model.backbones.hf_vlm.families import vlm_family

    if family is None:
        family = vlm_family("qwen2_vl")
    if not rows:
        raise ValueError("cannot collate an empty batch")
    expanded: list[tuple[list[int], list[int]]] = []
    for row in rows:
        ids, labels = list(row["input_ids"]), list(row["labels"])
        where = ids.index(image_token_id)
        count = row["image"].token_counts(merge_size)[0]
        expanded.append(
            (
                ids[:where] + [image_token_id] * count + ids[where + 1 :],
                labels[:where] + [IGNORE_INDEX] * count + labels[where + 1 :],
            )
        )
    width = max(len(ids) for ids, _ in expanded)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels_out = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labels) in enumerate(expanded):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels_out[i, : len(ids)] = torch.tensor(labels, dtype=torch.long)
        mask[i, : len(ids)] = 1
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels_out,
        "attention_mask": mask,
    }
    if family.type_ids_key is not None:
        marks = (input_ids == image_token_id) & (mask == 1)
        batch[family.type_ids_key] = marks.to(torch.int32)
    pixels = family.batch_type.stack([row["image"] for row in rows])
    # float32 on the CPU; loss_sums casts the pixels to the compute dtype on the device
    batch.update(family.pixel_inputs(pixels, torch.device("cpu"), torch.float32))
    batch.update(
        level_rank=torch.tensor([row["level_rank"] for row in rows], dtype=torch.long),
        level_probs=torch.tensor([row["level_probs"] for row in rows], dtype=torch.float32),
        index=torch.tensor([row["index"] for row in rows], dtype=torch.long),
    )
    return batch


#: Keys of a collated batch that are not model inputs.
_NOT_INPUTS = frozenset({"labels", "level_rank", "level_probs", "index"})


class ChatTrainingForward(TrainingForward):
    """Language model to its hidden states, the LM head at the picked positions only."""

    def forward(  # type: ignore[override]
        self, rows: torch.Tensor, cols: torch.Tensor, **inputs: torch.Tensor
    ) -> torch.Tensor:
        """Return ``[N, V]`` logits at ``(rows[i], cols[i])``.

        Args:
            rows, cols: the positions whose logits the loss needs.
            **inputs: the model's inputs (``input_ids``, ``attention_mask``, the family's
                token-type marks and picture inputs).
        """
        core = core_model(self.model)
        hidden = core.model(**inputs, use_cache=False).last_hidden_state
        logits: torch.Tensor = core.get_output_embeddings()(hidden[rows, cols])
        return logits


def _runnable(name: str, module: nn.Module) -> list[str]:
    """``name``, or its items when it is a container: peft's ``modules_to_save`` wraps modules
    that run, not containers."""
    if isinstance(module, nn.ModuleList | nn.ModuleDict):
        return [f"{name}.{item}" for item, _ in module.named_children()]
    return [name]


def _groups(core: nn.Module, vision: str, projectors: Sequence[str]) -> dict[str, list[str]]:
    """Module names of the vision tower, the projector(s), the LM and the embeddings.

    Args:
        core: the model.
        vision: the vision tower's module name.
        projectors: the projectors' module names (those the model lacks are skipped); when
            they lie inside the vision tower (Qwen's merger), the vision group is the tower's
            other children.
    """
    present = [p for p in projectors if _has(core, p)]
    groups: dict[str, list[str]] = {
        "vision": [],
        "projector": [n for p in present for n in _runnable(p, core.get_submodule(p))],
    }
    tower = core.get_submodule(vision)
    if not any(_under(p, [vision]) for p in present):
        groups["vision"] = [vision]
    else:
        for name, child in tower.named_children():
            if f"{vision}.{name}" not in present:
                groups["vision"] += _runnable(f"{vision}.{name}", child)
        if any(True for _ in tower.named_parameters(recurse=False)):
            raise TrainError(f"{type(tower).__name__} holds parameters outside its sub-modules")
    return {
        **groups,
        "llm": [_LLM],
        "embeddings": list(_EMBEDDINGS),
    }


def _has(core: nn.Module, name: str) -> bool:
    try:
        core.get_submodule(name)
    except AttributeError:
        return False
    return True


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _without_tied_copies(
    core: nn.Module, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A gathered state dict without the tied copies (``lm_head.weight`` of a model that ties
    it to the input embeddings), as ``save_pretrained`` writes the live model: gathered from
    FSDP shards the two are separate tensors, and both would be saved."""
    tied = set(getattr(core, "all_tied_weights_keys", None) or {})
    every = {name for name, _ in core.named_parameters(remove_duplicate=False)}
    tied |= every - {name for name, _ in core.named_parameters()}
    return {name: tensor for name, tensor in state.items() if name not in tied}


class HFVisionLanguageTraining(TrainingBackbone):
    """The generic backbone's families; the class itself trains the Qwen-VL families, and
    :class:`Gemma3Training` / :class:`InternVLTraining` change only where their parts sit and
    the default resolution (see the module docstring for the defaults and why).

    Class attributes (besides :class:`TrainingBackbone`'s):
        vision_tower: the vision tower's module name.
        projectors: the projectors' module names (trained in full by default).
    """

    family: ClassVar[str] = "hf_vlm"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")
    lora_targets: ClassVar[tuple[str, ...]] = QWEN_LM_LINEARS
    lora_exclude: ClassVar[tuple[str, ...]] = (_VISUAL,)
    train_vision_model: ClassVar[bool] = False
    train_projector: ClassVar[bool] = True
    vision_tower: ClassVar[str] = _VISUAL
    projectors: ClassVar[tuple[str, ...]] = _PROJECTORS

    @classmethod
    def for_model_type(cls, model_type: str) -> type[TrainingBackbone] | None:
        """The class of this module that trains ``model_type``, if any."""
        for variant in (HFVisionLanguageTraining, Gemma3Training, InternVLTraining):
            if model_type in variant.model_types:
                return variant
        return None

    @classmethod
    def trained_model_types(cls) -> tuple[str, ...]:
        """Every model type this module trains."""
        return (
            *HFVisionLanguageTraining.model_types,
            *Gemma3Training.model_types,
            *InternVLTraining.model_types,
        )

    def default_resolution(self, config: TrainConfig) -> Any:
        """``model.resolution`` when the configuration leaves it unset: fixed 448 px."""
        from artquant_model.spec import Resolution

        return Resolution(mode="fixed", size=TRAIN_RESOLUTION)

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """The family defaults, and :meth:`default_resolution` when ``model.resolution`` is
        not set."""
        config = super().resolve(config)
        if config.model.resolution is not None:
            return config
        fixed = self.default_resolution(config)
        return config.model_copy(
            update={"model": config.model.model_copy(update={"resolution": fixed})}
        )

    def default_prompt(self, config: TrainConfig) -> str:
        from artquant_model.spec import ARTQUANT_SPEC

        return ARTQUANT_SPEC.question().prompt

    def load_processing(self, config: TrainConfig) -> None:
        """Load the tokenizer and the family's image processor, and check the base.

        Raises:
            TrainError: no chat template, a slow tokenizer, or a base configuration the
                scoring backbone refuses (e.g. Gemma's ``final_logit_softcapping``).
        """
        from transformers import AutoConfig, AutoTokenizer

        from artquant_model.backbones.hf_vlm.families import vlm_family
        from artquant_model.spec import Resolution

        base = config.model.base
        tokenizer_path = config.model.tokenizer or base
        self.tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer_path))
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise TrainError(f"the tokenizer at {tokenizer_path} has no chat template")
        if not getattr(self.tokenizer, "is_fast", False):
            raise TrainError(f"the tokenizer at {tokenizer_path} is not a fast tokenizer")
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        model_config = AutoConfig.from_pretrained(os.fspath(base))
        self.vlm_family = vlm_family(str(model_config.model_type))
        try:
            self.vlm_family.check(model_config)
            self.picture = (
                self.vlm_family.placeholder(model_config, self.tokenizer),
                self.vlm_family.picture_text(model_config, self.tokenizer),
            )
        except ValueError as error:
            raise TrainError(f"model.base {os.fspath(base)!r}: {error}") from error
        self.processor_dir = Path(config.model.image_processor or base)
        # unset (a configuration that skipped resolve): the processor's own sizing
        self.image_processor = self.vlm_family.image_processor(
            self.processor_dir, model_config, config.model.resolution or Resolution()
        )
        self.image_token_id = int(model_config.image_token_id)

    def load_pixels(self, path: Path) -> Any:
        return self.image_processor(path)

    def encoder(self, config: TrainConfig) -> Encoder:
        return functools.partial(
            encode_chat, image_token_id=self.image_token_id, picture=self.picture
        )

    def collate_fn(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        return functools.partial(
            collate_chat,
            pad_token_id=self.pad_token_id,
            image_token_id=self.image_token_id,
            merge_size=self.image_processor.merge_size,
            family=self.vlm_family,
        )

    def load_model(self, config: TrainConfig, dtype: torch.dtype) -> nn.Module:
        from transformers import AutoModelForImageTextToText

        model: nn.Module = AutoModelForImageTextToText.from_pretrained(
            os.fspath(config.model.base),
            dtype=dtype,
            attn_implementation=config.model.attn_implementation,
            use_safetensors=True,
        )
        return model

    def prepare(self, model: nn.Module, config: TrainConfig) -> nn.Module:
        """LoRA on the LM's linear layers, fully trained modules, checkpointing (logged).

        Raises:
            ValueError: LoRA together with ``freeze.train_llm`` or ``freeze.train_embeddings``
                (train those without LoRA), or nothing to train.
        """
        from artquant_train.modeling import find_lora_targets

        freeze = config.freeze
        groups = _groups(model, self.vision_tower, self.projectors)
        full: list[str] = []
        if freeze.train_vision_model:
            full += groups["vision"]
        if freeze.train_abstractor:
            full += groups["projector"]
        for param in model.parameters():
            param.requires_grad_(False)
        prepared: nn.Module = model
        if config.lora.enabled:
            if freeze.train_llm or freeze.train_embeddings:
                raise ValueError(
                    "freeze.train_llm / freeze.train_embeddings train the language model in "
                    "full: set lora.enabled=false for full fine-tuning"
                )
            from peft import LoraConfig, get_peft_model

            names = find_lora_targets(model, config.lora.targets or (), config.lora.exclude or ())
            peft_config = LoraConfig(
                r=config.lora.r,
                lora_alpha=config.lora.alpha,
                lora_dropout=config.lora.dropout,
                target_modules=names,
                modules_to_save=full or None,
                bias="none",
                task_type="CAUSAL_LM",
            )
            prepared = get_peft_model(model, peft_config)  # type: ignore[arg-type]
            logger.info(
                "LoRA r=%d alpha=%d (scale %g) on %d modules; trained in full: %s",
                config.lora.r,
                config.lora.alpha,
                config.lora.scale,
                len(names),
                full or "nothing",
            )
        else:
            if freeze.train_llm:
                full += groups["llm"]
            if not freeze.train_embeddings:
                frozen = groups["embeddings"]
            else:
                frozen = []
                full += groups["embeddings"]
            for name, param in model.named_parameters():
                if _under(name, full) and not _under(name, frozen):
                    param.requires_grad_(True)
            logger.info("no LoRA; trained in full: %s", full or "nothing")
        core = core_model(prepared)
        counts = {"total": 0, "trainable": 0}
        for param in core.parameters():
            counts["total"] += param.numel()
            if param.requires_grad:
                counts["trainable"] += param.numel()
                if param.dtype != torch.float32:
                    param.data = param.data.float()
        if counts["trainable"] == 0:
            raise ValueError(
                "the configuration trains nothing: enable LoRA or a freeze.train_* switch"
            )
        logger.info("trainable parameters: %s", counts)
        if config.model.gradient_checkpointing:
            enable_checkpointing(core)
        return prepared

    def training_forward(self, prepared: nn.Module) -> nn.Module:
        return ChatTrainingForward(prepared)

    def loss_sums(
        self,
        wrapped: nn.Module,
        batch: dict[str, Any],
        level_ids: torch.Tensor,
        *,
        kl: KLMode,
        dtype: torch.dtype,
    ) -> LossSums:
        positions = level_positions_from_rank(batch["labels"], batch["level_rank"])
        picked = supervised_positions(batch["labels"], positions, level_ids, kl=kl)
        inputs = {key: value for key, value in batch.items() if key not in _NOT_INPUTS}
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        logits = wrapped(picked.rows, picked.cols, **inputs)
        return packed_loss_sums(logits, picked, batch["level_probs"], level_ids, kl=kl)

    # -- scoring and releases ------------------------------------------------------------

    def spec(self, config: TrainConfig, questions: Sequence[Any]) -> Any:
        """The release's :class:`~artquant_model.spec.ScorerSpec`: the levels, the total's
        question (``validation.prompt`` or ArtQuant's) with ``levels.prefix`` as its stem, one
        question per trained attribute, and the resolution the run trained with."""
        from artquant_model.spec import TOTAL, Question, ScorerSpec

        levels = config.levels
        table = {TOTAL: Question(prompt=self.total_prompt, stem=levels.prefix)}
        for question in questions:
            table[question.id] = Question(prompt=question.question, stem=question.stem)
        return ScorerSpec(
            name="artquant",
            words=levels.words,
            values=levels.values,
            scale=(min(levels.values), max(levels.values)),
            questions=table,
            resolution=self.image_processor.resolution,
        )

    def check_spec(
        self, config: TrainConfig, level_spec: dict[str, Any], questions: Sequence[Any]
    ) -> None:
        """The release's spec is :meth:`spec` (chat-template prompts, no ``<|image|>``)."""
        self.spec(config, questions)

    def score(
        self,
        prepared: nn.Module,
        paths: Sequence[Path],
        *,
        question: Any,
        device: torch.device,
        batch_size: int,
        autocast: Callable[[], AbstractContextManager[Any]] | None,
    ) -> np.ndarray:
        from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
        from artquant_model.spec import TOTAL, Question, ScorerSpec

        stem = self.stem if question is None else question.stem
        prompt = self.total_prompt if question is None else question.question
        spec = ScorerSpec(
            name="validation",
            words=self.words,
            values=tuple(self.values),
            scale=(min(self.values), max(self.values)),
            questions={TOTAL: Question(prompt=prompt, stem=stem)},
            resolution=self.image_processor.resolution,
        )
        scorer = HFVisionLanguageBackbone(
            core_model(prepared), self.tokenizer, self.image_processor, spec
        )
        context = autocast or nullcontext
        out: list[np.ndarray] = []
        for start in range(0, len(paths), batch_size):
            pixels = self.image_processor(list(paths[start : start + batch_size]))
            with context():
                out.append(scorer.score(pixels).score.numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _write_processing(self, folder: Path, config: TrainConfig, spec: Any) -> None:
        self.tokenizer.save_pretrained(os.fspath(folder))
        shutil.copyfile(
            self.processor_dir / "preprocessor_config.json", folder / "preprocessor_config.json"
        )
        spec.save(folder)
        config.save(folder / "train_config.yaml")

    def write_release(
        self,
        prepared: nn.Module,
        folder: Path,
        *,
        config: TrainConfig,
        dtype: torch.dtype | None,
        level_spec: dict[str, Any],
        questions: Sequence[Any],
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> Path:
        """A peft adapter folder (LoRA) or a full checkpoint, with tokenizer, preprocessor
        settings, ``artquant_spec.json`` and ``train_config.yaml``."""
        spec = self.spec(config, questions)
        peft_model: Any = prepared
        with atomic_directory(Path(folder)) as tmp:
            if config.lora.enabled and hasattr(peft_model, "peft_config"):
                base = str(Path(config.model.base).resolve())
                for adapter in peft_model.peft_config.values():
                    adapter.base_model_name_or_path = base
                peft_model.save_pretrained(
                    os.fspath(tmp),
                    state_dict=None if state_dict is None else dict(state_dict),
                    safe_serialization=True,
                )
            else:
                core = core_model(prepared)
                state = None if state_dict is None else _without_tied_copies(core, state_dict)
                if dtype is not None:
                    state = {
                        name: t.to(dtype) if t.is_floating_point() else t
                        for name, t in (state or core.state_dict()).items()
                    }
                core.save_pretrained(os.fspath(tmp), state_dict=state, safe_serialization=True)
            self._write_processing(tmp, config, spec)
        logger.info("wrote release folder %s", folder)
        return Path(folder)

    def merge_release(
        self,
        folder: Path,
        *,
        config: TrainConfig,
        level_spec: dict[str, Any],
        questions: Sequence[Any],
    ) -> Path:
        """Load the adapter folder over its base (merged) and write the full checkpoint."""
        from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone

        merged = HFVisionLanguageBackbone.from_pretrained(folder, base=config.model.base)
        spec = self.spec(config, questions)
        with atomic_directory(Path(folder)) as tmp:
            merged.model.save_pretrained(os.fspath(tmp), safe_serialization=True)
            self._write_processing(tmp, config, spec)
        logger.info("merged LoRA into a full checkpoint at %s", folder)
        return Path(folder)


class _TiledTraining(HFVisionLanguageTraining):
    """Gemma 3 and InternVL: a vision tower and a ``multi_modal_projector`` beside it, and a
    language model with attention and MLP linears only."""

    model_types: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[tuple[str, ...]] = LM_LINEARS
    lora_exclude: ClassVar[tuple[str, ...]] = (_TOWER, _PROJECTOR)
    vision_tower: ClassVar[str] = _TOWER
    projectors: ClassVar[tuple[str, ...]] = (_PROJECTOR,)

    def default_resolution(self, config: TrainConfig) -> Any:
        """Fixed, one tile of the vision tower's size (read from the base's
        ``preprocessor_config.json``): every picture padded to a square and seen whole."""
        from transformers import AutoConfig

        from artquant_model.backbones.hf_vlm.families import vlm_family
        from artquant_model.spec import Resolution

        base = os.fspath(config.model.base)
        model_config = AutoConfig.from_pretrained(base)
        folder = config.model.image_processor or base
        tiles = vlm_family(self.model_types[0]).image_processor(folder, model_config, Resolution())
        return Resolution(mode="fixed", size=tiles.side)


class Gemma3Training(_TiledTraining):
    """Gemma 3 (``model.vision_tower`` SigLIP, ``model.multi_modal_projector``, Gemma 3 LM)."""

    model_types: ClassVar[tuple[str, ...]] = ("gemma3",)


class InternVLTraining(_TiledTraining):
    """InternVL ``-hf`` (``model.vision_tower`` InternViT, ``model.multi_modal_projector``,
    Qwen2 LM)."""

    model_types: ClassVar[tuple[str, ...]] = ("internvl",)


__all__ = [
    "LM_LINEARS",
    "QWEN_LM_LINEARS",
    "TRAIN_RESOLUTION",
    "ChatTrainingForward",
    "Gemma3Training",
    "HFVisionLanguageTraining",
    "InternVLTraining",
    "collate_chat",
    "encode_chat",
    "end_of_turn",
]
