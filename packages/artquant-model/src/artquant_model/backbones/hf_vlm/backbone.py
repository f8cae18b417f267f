"""The generic backbone: a vision-language model that transformers loads with
``AutoModelForImageTextToText`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, Gemma 3, InternVL).

One class for all; what differs between families (the picture placeholder and its expansion,
the pixels, token-type ids, positions) is a small adapter in
:mod:`~artquant_model.backbones.hf_vlm.families`. Steps 2 and 3 below are the Qwen families';
Gemma 3 and InternVL give a fixed number of tokens per tile and take 1-D positions, which the
backbone counts from the attention mask so that left padding does not shift them.

How a score is read (the same as the plain transformers procedure, tested against it):

1. The question is rendered with the tokenizer's own chat template: the spec's system prompt (or
   the template's default), a user turn holding the picture then the question, the generation
   prompt (reasoning turned off with ``enable_thinking=False`` where the template has it), and
   then the answer stem, "The quality of the painting is". The next token is the level word.
2. The picture's placeholder becomes one image token per merged patch; ``mm_token_type_ids``
   marks them, so the model builds its multimodal rotary positions (mrope) from the picture's
   grid. Without it Qwen2.5-VL silently falls back to plain positions and scores move by more
   than 2 points on 1-10.
3. The text before the picture (system turn, user-turn opening) is the same for every picture:
   with ``share_prefix`` on, it runs once per batch as one row, and each picture continues its
   keys and values with its picture tokens and the text after them, padded on the **right**
   and read at its last real token, at the positions of the full sequence (see
   :meth:`HFVisionLanguageBackbone.level_logits`). Without it (the default; always on Qwen3.5)
   a batch is padded on the **left** with an attention mask, so every row ends at its read
   position, and positions come from the mask. Either way a row scores as it does alone
   (float32: within 1e-5).
4. Only the K level-word rows of the LM head are applied, at the read position only.

Example:
    >>> import torch
    >>> from artquant_model.testing import tiny_vlm_backbone
    >>> backbone = tiny_vlm_backbone("qwen2_vl")  # doctest: +SKIP
    >>> backbone.score(backbone.image_processor([torch.zeros(3, 40, 60)])).score  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from artquant_model.backbones._base import Backbone
from artquant_model.backbones.hf_vlm.families import FAMILIES, vlm_family
from artquant_model.backbones.hf_vlm.processing_hf_vlm import VisionBatch
from artquant_model.backbones.hf_vlm.processing_tiles import TileBatch
from artquant_model.levels import LevelScores, first_token_ids, level_scores
from artquant_model.spec import ARTQUANT_SPEC, TOTAL, Question, ScorerSpec, read_spec

logger = logging.getLogger(__name__)


@dataclass
class _PicturePass:
    """What a batch's pass up to the end of its text leaves (see ``_picture_pass``).

    Attributes:
        hidden: ``[N, hidden]`` final states at each row's last real token.
        cache: The key/value cache of every column (None unless kept).
        mask: ``[N, columns]`` attention mask of the cache's columns.
        following: ``[N]`` the position that follows each row's last real token (None unless
            the cache is kept).
    """

    hidden: torch.Tensor
    cache: Any
    mask: torch.Tensor
    following: torch.Tensor | None


#: ``config.json`` ``model_type`` values this backbone is tested on (one adapter per family,
#: :mod:`~artquant_model.backbones.hf_vlm.families`).
HF_VLM_MODEL_TYPES = tuple(FAMILIES)
#: The user turn of :meth:`HFVisionLanguageBackbone.generate` when no prompt is given.
DESCRIBE_QUESTION = "Describe this painting."


def _first_folder(folders: Sequence[Path], *names: str) -> Path | None:
    return next((f for f in folders if any((f / n).is_file() for n in names)), None)


class HFVisionLanguageBackbone(Backbone):
    """A transformers image-text-to-text model as an ArtQuant backbone.

    Args:
        model: An ``...ForConditionalGeneration`` model (eval mode) with ``config.image_token_id``.
        tokenizer: Its tokenizer, with a chat template.
        image_processor: The family's image processor (a :class:`VisionImageProcessor` for
            the Qwen families, a :class:`TileImageProcessor` for Gemma 3 and InternVL).
        spec: The scorer spec (default :data:`artquant_model.spec.ARTQUANT_SPEC`).

    Attributes:
        share_prefix: Run the text before the picture once per batch (see
            :meth:`level_logits`). Off by default: it saves 5 % of a 448 px sequence's
            language-model tokens, but on a 2-core CPU it measured equal to the full sequence
            on a quiet machine (slower under load; benchmarks/NOTES.md); turn it on where a
            measurement says it helps.
            Scores are the same either way (float32: within 1e-5).
        sliding_window: The model's sliding-window size where it has such layers (Gemma 3),
            else None.

    Raises:
        ValueError: The tokenizer has no chat template, the template writes no image
            placeholder, or a level word is missing / shares its first token with another.
    """

    family: ClassVar[str] = "hf_vlm"
    model_types: ClassVar[tuple[str, ...]] = HF_VLM_MODEL_TYPES

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        spec: ScorerSpec = ARTQUANT_SPEC,
    ) -> None:
        super().__init__(model, tokenizer, image_processor, spec)
        config = model.config
        self.vlm_family = vlm_family(str(config.model_type))
        self.vlm_family.check(config)
        self.image_token_id = int(config.image_token_id)
        self.merge_size = image_processor.merge_size
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "the tokenizer has no chat template: a chat model's tokenizer_config.json (or "
                "chat_template.jinja) is needed to render the scoring prompt"
            )
        self.image_token = str(tokenizer.convert_ids_to_tokens(self.image_token_id))
        self.placeholder = self.vlm_family.placeholder(config, tokenizer)
        self.picture_text = self.vlm_family.picture_text(config, tokenizer)
        text_config = getattr(config, "text_config", config)
        kinds = getattr(text_config, "layer_types", None) or ()
        # Linear-attention (gated delta rule) layers, as in Qwen3.5: see level_logits. Gemma 3's
        # sliding-window layers are attention (padding-safe), not recurrent.
        self.recurrent = "linear_attention" in kinds
        self.sliding_window: int | None = (
            int(text_config.sliding_window) if "sliding_attention" in kinds else None
        )
        self.share_prefix = False
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self._prompts: dict[tuple[str, str | None], tuple[list[int], list[int]]] = {}
        self._level_ids: dict[str, list[int]] = {}
        for name in spec.questions:
            # level words and the template's picture placeholder are checked at load, not at
            # the first score
            self.level_ids(name)
            self.prompt_ids(spec.questions[name].prompt, stem=spec.questions[name].stem)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: Any,
        *,
        base: Any = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        spec: ScorerSpec | None = None,
    ) -> HFVisionLanguageBackbone:
        """Load a full folder, or a PEFT adapter folder over its base (merged).

        Args:
            path: A local folder: ``config.json`` + safetensors weights, tokenizer files and
                ``preprocessor_config.json`` (a hub snapshot), or a PEFT adapter folder
                (``adapter_config.json``) whose tokenizer/processor files may be in the base.
            base: The base folder for an adapter; default its ``base_model_name_or_path``.
            dtype: Compute dtype.
            device: Where to put the model.
            attn_implementation: ``"sdpa"`` (default) or ``"eager"``.
            spec: The scorer spec; default the folder's ``artquant_spec.json`` (then the
                base's), else :data:`~artquant_model.spec.ARTQUANT_SPEC`.

        Returns:
            The backbone, in eval mode.

        Raises:
            FileNotFoundError: No tokenizer or no ``preprocessor_config.json`` in the folders.
            ValueError: An adapter without a local base.
        """
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        folder = Path(path)
        folders = [folder]
        adapter = (folder / "adapter_config.json").is_file()
        if adapter:
            from artquant_model.loading import lora_base_folder

            base_folder = Path(base) if base is not None else lora_base_folder(folder)
            if base_folder is None:
                raise ValueError(
                    f"{folder} is a PEFT adapter whose adapter_config.json names no local base "
                    "folder; pass base=<the full base checkpoint folder>"
                )
            folders.append(base_folder)
        elif base is not None:
            raise ValueError(f"base={os.fspath(base)!r} was given but {folder} is not an adapter")
        model: Any = AutoModelForImageTextToText.from_pretrained(
            os.fspath(folders[-1]),
            dtype=dtype,
            attn_implementation=attn_implementation,
            use_safetensors=True,
        )
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, os.fspath(folder)).merge_and_unload()
        model.to(device)
        model.eval()
        tokenizer_dir = _first_folder(folders, "tokenizer.json", "tokenizer_config.json")
        if tokenizer_dir is None:
            raise FileNotFoundError(f"no tokenizer.json / tokenizer_config.json in {folders}")
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer_dir))
        processor_dir = _first_folder(folders, "preprocessor_config.json")
        if processor_dir is None:
            raise FileNotFoundError(f"no preprocessor_config.json in {folders}")
        if spec is None:
            spec = next((s for s in map(read_spec, folders) if s is not None), ARTQUANT_SPEC)
        family = vlm_family(str(model.config.model_type))
        images = family.image_processor(processor_dir, model.config, spec.resolution)
        return cls(model, tokenizer, images, spec)

    # -- prompts -------------------------------------------------------------------------------

    def render(self, question: str, *, stem: str | None = None) -> str:
        """The chat-template text of one picture and ``question``, with the generation prompt
        and, when given, the answer ``stem`` appended (the plain procedure's text)."""
        messages: list[dict[str, Any]] = []
        if self.spec.system_prompt is not None:
            messages.append(
                {"role": "system", "content": [{"type": "text", "text": self.spec.system_prompt}]}
            )
        messages.append(
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        )
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
        )
        return str(text) + (stem or "")

    def prompt_ids(self, question: str, *, stem: str | None = None) -> tuple[list[int], list[int]]:
        """Token ids before and after the picture's placeholder for :meth:`render`'s text.

        The template's picture placeholder is replaced by what the family's processor writes
        for a picture of one token (Qwen: the image pad itself; Gemma 3: start/end-of-image
        tokens and blank lines around it), and the text is tokenized. The picture token is a
        special token, so tokenizing around it equals tokenizing the text with it repeated once
        per picture token (what the processors do).

        Raises:
            ValueError: The template does not write exactly one image placeholder.
        """
        key = (question, stem)
        if key not in self._prompts:
            text = self.render(question, stem=stem)
            found = text.count(self.placeholder)
            expanded = text.replace(self.placeholder, self.picture_text)
            ids = [int(i) for i in self.tokenizer(expanded, add_special_tokens=False).input_ids]
            where = [i for i, token in enumerate(ids) if token == self.image_token_id]
            if found != 1 or len(where) != 1:
                raise ValueError(
                    f"the chat template wrote {found} image placeholders "
                    f"({self.placeholder!r}) for one picture; rendered text: {text!r}"
                )
            self._prompts[key] = (ids[: where[0]], ids[where[0] + 1 :])
        return self._prompts[key]

    def level_ids(self, question: str = TOTAL) -> list[int]:
        """First token of each level word after the question's stem (with its leading space).

        Raises:
            KeyError: Unknown question.
            ValueError: A word gives no token after the stem, or two words share a first token.
        """
        if question not in self._level_ids:
            stem = self.spec.question(question).stem
            self._level_ids[question] = first_token_ids(self.tokenizer, self.spec.words, stem)
        return self._level_ids[question]

    # -- batches -------------------------------------------------------------------------------

    def build_inputs(
        self, pixels: VisionBatch | TileBatch, before: Sequence[int], after: Sequence[int]
    ) -> dict[str, Any]:
        """Model inputs for a batch: ``before + picture tokens + after`` per picture, padded
        on the left, with ``attention_mask``, the family's picture-token marks
        (``mm_token_type_ids`` / ``token_type_ids``, 1 on picture tokens) and, for families
        with plain positions, ``position_ids`` counted from the mask.

        Args:
            pixels: The batch's pictures.
            before: Ids before the picture.
            after: Ids after it (ending at the read position).

        Returns:
            Keyword arguments for the model's forward (``input_ids``, ``attention_mask``, the
            marks, ``position_ids`` where needed, ``pixel_values`` and, for Qwen,
            ``image_grid_thw``), on the model's device.
        """
        counts = pixels.token_counts(self.merge_size)
        longest = len(before) + max(counts) + len(after)
        ids = torch.full((len(counts), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(counts), longest), dtype=torch.long)
        head = torch.tensor(list(before), dtype=torch.long)
        tail = torch.tensor(list(after), dtype=torch.long)
        for row, count in enumerate(counts):
            length = len(before) + count + len(after)
            start = longest - length
            ids[row, start : start + len(before)] = head
            ids[row, start + len(before) : start + len(before) + count] = self.image_token_id
            ids[row, longest - len(after) :] = tail
            mask[row, start:] = 1
        device = self.device
        inputs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if self.vlm_family.type_ids_key is not None:
            marks = (ids == self.image_token_id).to(torch.int32)
            inputs[self.vlm_family.type_ids_key] = marks.to(device)
        if self.vlm_family.positions_from_mask:
            # these models number positions 0.. from the first column, padding included
            inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        inputs.update(self.vlm_family.pixel_inputs(pixels, device, self.dtype))
        return inputs

    def _check_pixels(self, pixels: Any) -> Any:
        expected = self.vlm_family.batch_type
        if not isinstance(pixels, expected):
            raise TypeError(
                f"{type(self).__name__} ({self.vlm_family.name}) takes a {expected.__name__} from "
                f"its image_processor, got {type(pixels).__name__}"
            )
        if len(pixels) == 0:
            raise ValueError("no pictures to score")
        return pixels

    def shares_prefix(self, before: Sequence[int]) -> bool:
        """Whether a batch runs the text before the picture once (see :meth:`level_logits`):
        :attr:`share_prefix` is on, the prompt has text before the picture, and the model has
        no linear-attention (recurrent) layers."""
        return self.share_prefix and len(before) > 0 and not self.recurrent

    def level_logits(self, pixels: VisionBatch, *, question: str = TOTAL) -> torch.Tensor:
        """``[N, K]`` level-word logits at the read position (model dtype, model device).

        The tokens before the picture (system turn, user-turn opening, the family's
        start-of-picture text: about 20 tokens of ~290 for a 448 px picture on Qwen2.5-VL) are
        the same for every picture and, under causal attention, do not see it: they run once,
        as a batch of one, and their keys and values are repeated over the batch
        (:attr:`share_prefix`). Each picture then runs its picture tokens and the text after
        them, padded on the right and read at its last real token, so every row's real tokens
        stay contiguous from the first cache column (no hole in the mask: sliding-window layers
        see what they see in the full sequence). Positions are the full sequence's: the
        multimodal rotary positions of ``get_rope_index`` over prefix + picture + text, sliced,
        on the Qwen-VL models; the prefix length plus the column on Gemma 3 and InternVL.
        Gemma 3's picture marks cover the prefix too: its mask reads them by absolute position.

        Without a shared prefix (``share_prefix`` off, a template that starts with the
        picture), one left-padded forward pass runs each picture's whole sequence. Models with
        linear-attention layers (Qwen3.5) always do, one pass per distinct sequence length:
        there, left padding shifts the chunked delta rule's cumulative decays and moves float32
        scores by about 1e-5, so rows run unpadded (fixed resolution gives one length, hence one
        pass). A shared prefix is not used there either: continuing its recurrent and
        convolution states goes through a hybrid cache whose interface differs between the
        transformers versions supported (5.17's ``cache_params``, 5.24's
        ``get_recurrent_state``), and starting the continuation at the prefix's end moves the
        chunked rule's chunk boundaries, the same kind of float32 reordering that rules out
        left padding.
        """
        pixels = self._check_pixels(pixels)
        asked: Question = self.spec.question(question)
        before, after = self.prompt_ids(asked.prompt, stem=asked.stem)
        if self.recurrent:
            counts = pixels.token_counts(self.merge_size)
            groups: dict[int, list[int]] = {}
            for row, count in enumerate(counts):
                groups.setdefault(count, []).append(row)
            if len(groups) > 1:
                out: torch.Tensor | None = None
                for rows in groups.values():
                    part = self._forward_levels(
                        VisionBatch.stack([pixels[r] for r in rows]), before, after, question
                    )
                    if out is None:
                        out = part.new_empty((len(counts), part.shape[1]))
                    out[torch.tensor(rows, device=part.device)] = part
                assert out is not None  # groups is not empty
                return out
        return self._forward_levels(pixels, before, after, question)

    def _forward_levels(
        self, pixels: Any, before: list[int], after: list[int], question: str
    ) -> torch.Tensor:
        with torch.inference_mode():
            done = self._picture_pass(
                pixels, before, after, share=self.shares_prefix(before), keep_cache=False
            )
            return self._level_head(done.hidden, question)

    def _level_head(self, hidden: torch.Tensor, question: str) -> torch.Tensor:
        """The K level-word rows of the LM head applied to ``[N, hidden]`` states."""
        head = self.model.get_output_embeddings()
        index = torch.tensor(self.level_ids(question), device=hidden.device)
        bias = None if head.bias is None else head.bias.index_select(0, index)
        return torch.nn.functional.linear(hidden, head.weight.index_select(0, index), bias)

    @functools.cached_property
    def _cache_keyword(self) -> str:
        """The base model's keyword for a key/value cache: transformers 5.24 renamed
        ``past_key_values`` to ``cache`` (5.17 has only the old name)."""
        import inspect

        parameters = inspect.signature(self.model.base_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def _plain_positions(self, start: torch.Tensor | int, width: int) -> torch.Tensor:
        """Positions ``start + 0 .. width-1`` per row, shaped as the family takes them:
        ``[N, width]`` (Gemma 3, InternVL) or ``[3, N, width]`` (multimodal rotary, text:
        the three axes alike)."""
        steps = torch.arange(width, device=self.device)
        starts = torch.as_tensor(start, device=self.device).reshape(-1, 1)
        positions = starts + steps[None, :]
        if not self.vlm_family.positions_from_mask:
            positions = positions.unsqueeze(0).expand(3, -1, -1)
        return positions

    def _picture_pass(
        self, pixels: Any, before: list[int], after: list[int], *, share: bool, keep_cache: bool
    ) -> _PicturePass:
        """Run ``before + picture + after`` for every picture: the text before the picture
        once when ``share`` (see :meth:`level_logits`), else one left-padded pass. The caller
        holds inference mode."""
        base = self.model.base_model
        device = self.device
        if not share:
            inputs = self.build_inputs(pixels, before, after)
            output = base(**inputs, use_cache=keep_cache)
            mask = inputs["attention_mask"]
            hidden = output.last_hidden_state[:, -1, :]
            if not keep_cache:
                return _PicturePass(hidden, None, mask, None)
            if self.vlm_family.positions_from_mask:
                following = inputs["position_ids"][:, -1] + 1
            else:
                positions, _ = base.get_rope_index(
                    input_ids=inputs["input_ids"],
                    mm_token_type_ids=inputs["mm_token_type_ids"],
                    image_grid_thw=inputs["image_grid_thw"],
                    attention_mask=mask,
                )
                # one past the last position: for text the three axes are alike; for a
                # picture the next text position is one past its largest (t, h or w)
                following = positions[..., -1].amax(dim=0) + 1
            return _PicturePass(hidden, getattr(output, self._cache_keyword), mask, following)

        keyword = self._cache_keyword
        count = len(pixels)
        prefix = torch.tensor([before], dtype=torch.long, device=device)
        # the text before the picture, once: a batch of one, plain positions 0..P-1 (on the
        # Qwen-VL models get_rope_index numbers text before any picture the same way)
        shared = base(
            input_ids=prefix,
            attention_mask=torch.ones_like(prefix),
            position_ids=self._plain_positions(0, len(before)),
            use_cache=True,
        )
        cache = getattr(shared, keyword)
        cache.batch_repeat_interleave(count)
        # picture + text after it per row, padded on the right
        lengths = [n + len(after) for n in pixels.token_counts(self.merge_size)]
        longest = max(lengths)
        ids = torch.full((count, longest), self.pad_token_id, dtype=torch.long)
        tail_mask = torch.zeros((count, longest), dtype=torch.long)
        tail = torch.tensor(after, dtype=torch.long)
        for row, length in enumerate(lengths):
            pictured = length - len(after)
            ids[row, :pictured] = self.image_token_id
            ids[row, pictured:length] = tail
            tail_mask[row, :length] = 1
        ids, tail_mask = ids.to(device), tail_mask.to(device)
        mask = torch.cat([prefix.new_ones((count, len(before))), tail_mask], dim=1)
        whole = torch.cat([prefix.expand(count, -1), ids], dim=1)
        inputs = {"input_ids": ids, "attention_mask": mask}
        marks = (whole == self.image_token_id).to(torch.int32)
        if self.vlm_family.type_ids_key is not None:
            # the whole sequence's marks: Gemma 3's bidirectional picture mask indexes them by
            # absolute position (cache columns included); Qwen's are read only for positions
            inputs[self.vlm_family.type_ids_key] = marks
        ends = torch.tensor(lengths, device=device) - 1
        rows = torch.arange(count, device=device)
        inputs.update(self.vlm_family.pixel_inputs(pixels, device, self.dtype))
        if self.vlm_family.positions_from_mask:
            positions = self._plain_positions(len(before), longest).expand(count, -1)
            following = positions[rows, ends] + 1
        else:
            full, _ = base.get_rope_index(
                input_ids=whole,
                mm_token_type_ids=marks,
                image_grid_thw=inputs["image_grid_thw"],
                attention_mask=mask,
            )
            positions = full[..., len(before) :]
            following = positions[:, rows, ends].amax(dim=0) + 1
        output = base(**inputs, position_ids=positions, use_cache=True, **{keyword: cache})
        hidden = output.last_hidden_state[rows, ends]
        return _PicturePass(hidden, cache if keep_cache else None, mask, following)

    def _scores(self, logits: torch.Tensor) -> LevelScores:
        logits = logits.float().cpu()
        closed = level_scores(logits, self.spec.values)
        return LevelScores(score=closed.score, std=closed.std, probs=closed.probs, logits=logits)

    def score(self, pixels: Any, *, question: str = TOTAL) -> LevelScores:
        """Score a batch (see :meth:`Backbone.score`): one forward pass over the pictures,
        after the shared prefix's one row (see :meth:`level_logits`)."""
        return self._scores(self.level_logits(pixels, question=question))

    def score_questions(
        self, pixels: Any, questions: Sequence[str] | None = None
    ) -> dict[str, LevelScores]:
        """Score a batch with several questions (see :meth:`Backbone.score_questions`), the
        picture and everything before the question computed once per picture.

        The chat template puts the picture before the question, so every question's prompt
        starts with the same tokens: system turn, user turn opening, picture, and whatever
        text the questions share. That part runs once per picture (left-padded as
        :meth:`level_logits`); its keys and values are repeated over the questions
        (``pictures x questions`` rows), and each row runs only its question's own tokens
        (the rest of the question, the generation prompt, the stem), right-padded, read at its
        last real token. Positions continue each picture's: its multimodal rotary positions
        (``get_rope_index`` of the shared part) on the Qwen-VL models, plain positions counted
        from the mask on Gemma 3 and InternVL. Only attention layers cache cleanly this way.

        Qwen3.5 (``recurrent``: gated-delta-rule linear-attention layers) asks the questions
        one after the other instead, each one pass per sequence length as :meth:`level_logits`:
        its layers' convolution and recurrent states live in a hybrid cache whose interface
        differs between the transformers versions supported here (5.17's ``cache_params``
        layers, 5.24's ``get_recurrent_state``), and a left-padded shared part would shift
        the chunked rule's decays (see :meth:`level_logits`).
        """
        names = self.question_names(questions)
        pixels = self._check_pixels(pixels)
        if len(names) < 2 or self.recurrent:
            return super().score_questions(pixels, names)
        parts = [self.prompt_ids(q.prompt, stem=q.stem) for q in map(self.spec.question, names)]
        if any(before != parts[0][0] for before, _ in parts):
            return super().score_questions(pixels, names)
        logits = self._shared_prefix_logits(pixels, parts[0][0], [a for _, a in parts], names)
        return {name: self._scores(rows) for name, rows in zip(names, logits, strict=True)}

    def _shared_prefix_logits(
        self,
        pixels: Any,
        before: list[int],
        afters: list[list[int]],
        names: list[str],
    ) -> list[torch.Tensor]:
        """``[N, K]`` level logits per question, the picture and the shared text run once."""
        shortest = min(len(after) for after in afters)
        common = 0
        while common < shortest - 1 and all(a[common] == afters[0][common] for a in afters):
            common += 1
        tails = [after[common:] for after in afters]
        longest = max(len(tail) for tail in tails)
        counts = pixels.token_counts(self.merge_size)
        # With a shared prefix, rows of different lengths end in right padding, and the
        # questions' tokens come after it: a hole in the mask. Attention layers do not mind
        # (explicit positions, masked columns), but a sliding window counts columns, so with
        # a window shorter than the columns the hole would hide real tokens from it: then the
        # picture part runs left-padded, prefix included, as in level_logits' unshared path.
        columns = len(before) + max(counts) + common + longest
        holes_harmless = (
            len(set(counts)) == 1 or self.sliding_window is None or columns <= self.sliding_window
        )
        share = self.shares_prefix(before) and holes_harmless
        count, width = len(pixels), len(afters)
        device = self.device
        with torch.inference_mode():
            done = self._picture_pass(
                pixels, before, afters[0][:common], share=share, keep_cache=True
            )
            cache, following = done.cache, done.following
            assert following is not None  # kept with the cache
            ids = torch.full((count * width, longest), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((count * width, longest), dtype=torch.long)
            ends = torch.zeros(count * width, dtype=torch.long)
            for slot, tail in enumerate(tails):
                ids[slot::width, : len(tail)] = torch.tensor(tail, dtype=torch.long)
                mask[slot::width, : len(tail)] = 1
                ends[slot::width] = len(tail) - 1
            cache.batch_repeat_interleave(width)  # row = picture * width + question
            # positions continue each picture's: one past its last real token's
            position_ids = self._plain_positions(following.repeat_interleave(width), longest)
            full_mask = torch.cat(
                [done.mask.repeat_interleave(width, dim=0), mask.to(device)], dim=1
            )
            output = self.model.base_model(
                input_ids=ids.to(device),
                attention_mask=full_mask,
                position_ids=position_ids,
                use_cache=True,
                **{self._cache_keyword: cache},
            )
            rows = torch.arange(count * width, device=device)
            hidden = output.last_hidden_state[rows, ends.to(device)]
            return [self._level_head(hidden[slot::width], name) for slot, name in enumerate(names)]

    def generate(
        self, pixels: Any, prompt: str | None = None, *, max_new_tokens: int = 512
    ) -> list[int]:
        """Greedy answer ids (``model.generate``, ``do_sample=False``) for one picture.

        Args:
            pixels: One picture (a :class:`VisionBatch` of length 1).
            prompt: The user's question; default :data:`DESCRIBE_QUESTION`.
            max_new_tokens: The most tokens to generate.
        """
        pixels = self._check_pixels(pixels)
        if len(pixels) != 1:
            raise ValueError(f"generate takes one picture, got {len(pixels)}")
        before, after = self.prompt_ids(prompt or DESCRIBE_QUESTION)
        inputs = self.build_inputs(pixels, before, after)
        # one unpadded row: generate numbers positions itself and advances them while decoding
        inputs.pop("position_ids", None)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
            )
        return [int(t) for t in out[0, inputs["input_ids"].shape[1] :].tolist()]


__all__ = ["DESCRIBE_QUESTION", "HF_VLM_MODEL_TYPES", "HFVisionLanguageBackbone"]
