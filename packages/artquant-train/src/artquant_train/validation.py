"""Validation during training: score the val split and compute SRCC, PLCC, KRCC and MAE.

Scoring follows the inference path the SDK uses (one forward pass, the logits of the level words
at the end of the scoring prompt, closed-set softmax in float64 dotted with the level values),
so the ``best/`` checkpoint is chosen on the number users will see. The default prompt is
ArtQuant's inference prompt, which differs from the training template (reference §2.4).

Example:
    >>> default_validation_prompt("The quality of the painting is").split("ASSISTANT: ")[1]
    'The quality of the painting is'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artquant_train.data import check_images, resolve_image
from artquant_train.errors import EmptyDatasetError, SampleError

logger = logging.getLogger(__name__)


def default_validation_prompt(prefix: str) -> str:
    """ArtQuant's scoring prompt (``iqa_eval.py``) ending with the level prefix.

    Args:
        prefix: the text before the level word (``levels.prefix``).

    Returns:
        The prompt, without a system prompt and with the image after the question.

    Example:
        >>> default_validation_prompt("The quality of the painting is").split("\\n")[1]
        '<|image|> ASSISTANT: The quality of the painting is'
    """
    return f"USER: How would you rate the quality of this painting?\n<|image|> ASSISTANT: {prefix}"


@dataclass(frozen=True)
class ValItem:
    """One validation image and its human score."""

    sample_id: str
    image: Path
    score: float


def read_validation_objects(
    path: str | Path, image_root: Path | None, *, task: str = "score"
) -> list[tuple[dict[str, Any], ValItem]]:
    """The objects of one task in a validation file, each with its :class:`ValItem`.

    A sample's task is its ``task_type`` (missing means ``"score"``, as in the original);
    objects of other tasks (descriptions, attributes when reading scores) are passed over.

    Args:
        path: the file (JSON list or JSON Lines).
        image_root: folder relative image paths are under (``None``: the file's folder).
        task: ``"score"`` (the total) or ``"attribute"``.

    Returns:
        ``(object, item)`` pairs in file order (empty when the file has none of ``task``).

    Raises:
        FileNotFoundError: the file is missing.
        EmptyDatasetError: it holds no object at all.
        SampleError: an object of ``task`` lacks an image or a numeric score.
        MissingImageError: images do not exist.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"validation file not found: {file}")
    text = file.read_text(encoding="utf-8").removeprefix("\ufeff")
    if text.lstrip().startswith("["):
        objects = json.loads(text)
    else:
        objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not objects:
        raise EmptyDatasetError(f"validation file {file} holds no samples")
    root = image_root if image_root is not None else file.parent
    pairs = []
    for index, obj in enumerate(objects):
        if isinstance(obj, dict) and (obj.get("task_type") or "score") != task:
            continue
        image = obj.get("image") or obj.get("img_path") if isinstance(obj, dict) else None
        score = obj.get("gt_score", obj.get("score")) if isinstance(obj, dict) else None
        if not isinstance(image, str) or not isinstance(score, int | float):
            raise SampleError(
                f"{file} sample {index}: needs 'image' (or 'img_path') and a numeric "
                f"'gt_score'; got {obj!r:.200}"
            )
        item = ValItem(str(obj.get("id", image)), resolve_image(image, root), float(score))
        pairs.append((obj, item))
    check_images([item.image for _, item in pairs], source=str(file))
    return pairs


def read_validation_items(path: str | Path, image_root: Path | None) -> list[ValItem]:
    """Read the total-score items of a validation file: objects with an image and a score.

    Accepts training JSON (``image`` + ``gt_score``) and the original test JSON (``image`` or
    ``img_path``, ``gt_score``); ``score`` is accepted too. Description and attribute samples
    (``task_type``) are passed over; attributes are read by
    :func:`artquant_train.attributes.read_attribute_items`.

    Args:
        path: the file.
        image_root: folder relative image paths are under (``None``: the file's folder).

    Returns:
        The items, in file order (empty when the file holds only other tasks).

    Raises:
        FileNotFoundError: the file is missing.
        EmptyDatasetError: it holds no sample at all.
        SampleError: a score object lacks an image or a numeric score.
        MissingImageError: images do not exist.
    """
    return [item for _, item in read_validation_objects(path, image_root, task="score")]


@torch.no_grad()
def score_items(
    model: Any,
    items: Sequence[ValItem],
    *,
    prompt_ids: Sequence[int],
    level_ids: Sequence[int],
    values: Sequence[float],
    image_processor: Callable[[list[Any]], torch.Tensor],
    load_image: Callable[[Path], Any],
    device: torch.device,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
) -> np.ndarray:
    """Predicted scores for ``items`` (one forward pass per batch, last position only).

    Args:
        model: the unwrapped :class:`~artquant_model.MPLUGOwl2ForCausalLM` (LoRA applied).
        items: images to score.
        prompt_ids: the scoring prompt's ids (with -200), the same for every row.
        level_ids: ids of the level words.
        values: the level values.
        image_processor: pictures to ``[N, 3, S, S]``.
        load_image: path to picture.
        device: where the model lives.
        batch_size: images per forward pass.
        autocast: context factory for mixed precision (``None``: none).

    Returns:
        float64 scores, one per item.
    """
    from artquant_model import level_scores

    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    level_index = torch.tensor(list(level_ids), dtype=torch.long, device=device)
    scores: list[np.ndarray] = []
    context = autocast or nullcontext
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pixels = image_processor([load_image(item.image) for item in chunk]).to(device)
        with context():
            out = model(
                input_ids=ids.expand(len(chunk), -1),
                images=pixels.to(next(model.parameters()).dtype),
                logits_to_keep=1,
                use_cache=False,
            )
        level_logits = out.logits[:, -1, :].index_select(-1, level_index).float()
        scores.append(level_scores(level_logits.cpu(), values).score.numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def metrics_of(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """SRCC, PLCC, KRCC, MAE and RMSE through :func:`artquant_eval.evaluate`.

    Undefined metrics (e.g. a constant prediction has no correlation) are reported as NaN, so
    they never win ``best/``; non-finite predictions are left out.

    Args:
        pred: predicted scores, 1-D.
        target: human scores, the same length.

    Returns:
        ``{"srcc", "plcc", "krcc", "mae", "rmse"}`` as floats.

    Raises:
        artquant_eval.MetricInputError: lengths differ or fewer than 3 finite pairs.

    Example:
        >>> m = metrics_of(np.array([1.0, 2.0, 4.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> m["srcc"], m["mae"]
        (0.8, 0.5)
    """
    from artquant_eval import evaluate

    report = evaluate(pred, target, fit=None, nan_policy="omit")
    out = {}
    for name in ("srcc", "plcc", "krcc", "mae", "rmse"):
        value = getattr(report, name)
        out[name] = float("nan") if value is None else float(value)
    return out


__all__ = [
    "ValItem",
    "default_validation_prompt",
    "metrics_of",
    "read_validation_items",
    "read_validation_objects",
    "score_items",
]
