"""The ArtQuant training losses as pure functions of logits and labels.

The objective (reference §5.2) is::

    L = w_desc · CE_desc + w_next · (CE_score∖level + w_kl · KL)

* ``CE_desc``: mean next-token cross-entropy over the answer tokens of description samples.
* ``CE_score∖level``: the same over score answers (``The quality of the painting is`` + ``.`` +
  ``</s>``) **without the level token**: its label and the logit that predicts it are removed.
  Removing both before the shift is the same as ignoring that one (logit, label) pair after it,
  which is how it is computed here.
* ``KL``: at the position predicting the level token, ``KL(q || softmax(z))`` where ``q`` is the
  soft target (``level_probs``) on the level ids and zero elsewhere, and the softmax runs over the
  full vocabulary (``open``; the original) or the level words only (``closed``); averaged over
  score samples.

Losses are returned as sums and counts (:class:`LossSums`) so that a trainer can normalise by
the counts of the whole optimizer step across micro-batches and processes. That keeps the
gradient of a distributed step equal to the single-process one even when a process has no score
(or no description) samples in its batch.

Example:
    >>> import torch
    >>> logits = torch.zeros(1, 4, 6)
    >>> labels = torch.tensor([[-100, 3, 2, 5]])
    >>> sums = loss_sums(logits, labels, torch.tensor([2]), torch.tensor([[0.5, 0.5]]),
    ...                  torch.tensor([2, 4]))
    >>> int(sums.score_tokens), round(float(sums.kl_sum), 4)  # 2 CE tokens; KL = log(6/2)
    (2, 1.0986)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100

KLMode = Literal["open", "closed", "none"]


@dataclass(frozen=True)
class LossSums:
    """Un-normalised loss terms of one micro-batch (0-d tensors).

    Attributes:
        description_ce_sum: summed token CE over description answers.
        description_tokens: number of those tokens.
        score_ce_sum: summed token CE over score answers, level token excluded (included when
            the KL mode is ``none``).
        score_tokens: number of those tokens.
        kl_sum: summed KL over score samples.
        score_rows: number of score samples.
    """

    description_ce_sum: Tensor
    description_tokens: Tensor
    score_ce_sum: Tensor
    score_tokens: Tensor
    kl_sum: Tensor
    score_rows: Tensor

    def counts(self) -> Tensor:
        """The counts ``[description_tokens, score_tokens, score_rows]`` as float64."""
        return torch.stack([self.description_tokens, self.score_tokens, self.score_rows]).to(
            torch.float64
        )

    def detached_sums(self) -> Tensor:
        """The three sums, detached, as one float64 tensor (for logging)."""
        return (
            torch.stack([self.description_ce_sum, self.score_ce_sum, self.kl_sum])
            .detach()
            .to(torch.float64)
        )


@dataclass(frozen=True)
class LossWeights:
    """The weights of :func:`combine_losses` (defaults: the paper's recipe)."""

    description: float = 1.0
    next_token: float = 0.05
    kl: float = 1.0


def count_answer_tokens(labels: Tensor, level_positions: Tensor, kl: KLMode = "open") -> Tensor:
    """Count the tokens :func:`loss_sums` will average over, without a forward pass.

    Args:
        labels: ``[B, L]`` labels (``-100`` = not supervised).
        level_positions: ``[B]`` index of the level token in each row's labels, ``-1`` for
            description rows.
        kl: the KL mode (with ``none`` the level token stays in the score CE).

    Returns:
        float64 tensor ``[description_tokens, score_tokens, score_rows]``.

    Example:
        >>> labels = torch.tensor([[-100, 5, 9, 6], [-100, -100, 3, 4]])
        >>> count_answer_tokens(labels, torch.tensor([2, -1])).tolist()  # level token left out
        [2.0, 2.0, 1.0]
    """
    is_score = level_positions >= 0
    supervised = labels[:, 1:] != IGNORE_INDEX
    per_row = supervised.sum(dim=1)
    description_tokens = per_row[~is_score].sum()
    score_tokens = per_row[is_score].sum()
    if kl != "none":
        score_tokens = score_tokens - is_score.sum()
    return torch.stack([description_tokens, score_tokens, is_score.sum()]).to(torch.float64)


def loss_sums(
    logits: Tensor,
    labels: Tensor,
    level_positions: Tensor,
    level_probs: Tensor,
    level_ids: Tensor,
    *,
    kl: KLMode = "open",
) -> LossSums:
    """Compute the un-normalised ArtQuant loss terms of a mixed batch.

    Args:
        logits: ``[B, L, V]`` logits aligned with ``labels`` (logit ``t`` predicts label
            ``t + 1``).
        labels: ``[B, L]`` token ids of the supervised answer positions, ``-100`` elsewhere.
        level_positions: ``[B]`` long; for a score row, the index ``p`` in ``labels`` of its
            level token (the logit at ``p - 1`` predicts it); ``-1`` marks a description row.
        level_probs: ``[B, K]`` soft targets over the ``K`` level words (rows of description
            samples are ignored); each score row must sum to 1.
        level_ids: ``[K]`` token ids of the level words, in the order of ``level_probs``.
        kl: ``open`` (full-vocabulary softmax), ``closed`` (softmax over the level ids) or
            ``none`` (no KL; the level token is supervised by the CE instead).

    Returns:
        The sums and counts; combine them with :func:`combine_losses`.

    Raises:
        ValueError: shapes disagree, a level position is out of range, the label there is not
            a level id, or a soft target is not a distribution.
    """
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits must be [B, L, V] and labels [B, L]; got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    batch, length, vocab = logits.shape
    if level_positions.shape != (batch,):
        raise ValueError(f"level_positions must be [{batch}], got {tuple(level_positions.shape)}")
    if kl not in ("open", "closed", "none"):
        raise ValueError(f"kl must be 'open', 'closed' or 'none', got {kl!r}")
    is_score, score_rows, positions = _score_rows(labels, level_positions, level_ids)

    targets = labels[:, 1:].clone()
    if kl != "none" and positions.numel():
        # Drop the (logit p-1 -> label p) pair: the level token is taught by the KL instead.
        targets[score_rows, positions - 1] = IGNORE_INDEX
    token_ce = F.cross_entropy(
        logits[:, :-1, :].reshape(-1, vocab).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(batch, length - 1)
    supervised = targets != IGNORE_INDEX
    zero = logits.new_zeros((), dtype=torch.float32)
    description = ~is_score
    description_ce_sum = token_ce[description].sum() if description.any() else zero
    score_ce_sum = token_ce[is_score].sum() if is_score.any() else zero

    if kl == "none" or not positions.numel():
        kl_sum = zero
    else:
        predicting = logits[score_rows, positions - 1, :]
        kl_sum = level_kl(predicting, level_probs[score_rows], level_ids, kl=kl).sum()
    return LossSums(
        description_ce_sum=description_ce_sum,
        description_tokens=supervised[description].sum(),
        score_ce_sum=score_ce_sum,
        score_tokens=supervised[is_score].sum(),
        kl_sum=kl_sum,
        score_rows=is_score.sum(),
    )


def _score_rows(
    labels: Tensor, level_positions: Tensor, level_ids: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(is_score [B], score row indices, their level positions)``, checked."""
    length = labels.shape[1]
    is_score = level_positions >= 0
    score_rows = torch.nonzero(is_score).flatten()
    positions = level_positions[score_rows]
    if positions.numel() and (positions.min() < 1 or positions.max() >= length):
        raise ValueError(
            f"level positions must lie in [1, {length - 1}] for score rows; got "
            f"{positions.tolist()}"
        )
    level_labels = labels[score_rows, positions]
    if positions.numel() and not torch.isin(level_labels, level_ids).all():
        raise ValueError(
            f"the labels at the level positions {level_labels.tolist()} are not level ids "
            f"{level_ids.tolist()}"
        )
    return is_score, score_rows, positions


@dataclass(frozen=True)
class SupervisedPositions:
    """The positions whose logits a loss needs, for computing the LM head there only.

    Attributes:
        rows / cols: ``[N]`` the row and the position ``t`` of each logit (logit ``t``
            predicts label ``t + 1``), in row-major order.
        targets: ``[N]`` the label each logit is trained on (``-100`` for the logit predicting
            a level token when the KL teaches it instead).
        is_level: ``[N]`` whether the logit predicts a score row's level token (one per row).
        is_score: ``[B]`` whether each row is a score row.
    """

    rows: Tensor
    cols: Tensor
    targets: Tensor
    is_level: Tensor
    is_score: Tensor


def supervised_positions(
    labels: Tensor, level_positions: Tensor, level_ids: Tensor, *, kl: KLMode = "open"
) -> SupervisedPositions:
    """Select the logits :func:`loss_sums` actually uses: those predicting supervised labels.

    A model then applies its LM head to these ``N`` hidden states only instead of all
    ``B x L`` (on a 150 k vocabulary the full logits dominate the memory of a step), and
    :func:`packed_loss_sums` gives the same sums as :func:`loss_sums` on the full logits.

    Args:
        labels / level_positions / level_ids / kl: as for :func:`loss_sums`.

    Returns:
        The :class:`SupervisedPositions`.

    Raises:
        ValueError: as :func:`loss_sums` (level positions out of range or not on a level id).

    Example:
        >>> picked = supervised_positions(torch.tensor([[-100, 3, 2, 5]]), torch.tensor([2]),
        ...                               torch.tensor([2, 4]))
        >>> picked.cols.tolist(), picked.targets.tolist(), picked.is_level.tolist()
        ([0, 1, 2], [3, -100, 5], [False, True, False])
    """
    if labels.dim() != 2 or level_positions.shape != labels.shape[:1]:
        raise ValueError(
            f"labels must be [B, L] and level_positions [B]; got {tuple(labels.shape)} and "
            f"{tuple(level_positions.shape)}"
        )
    if kl not in ("open", "closed", "none"):
        raise ValueError(f"kl must be 'open', 'closed' or 'none', got {kl!r}")
    is_score, _, _ = _score_rows(labels, level_positions, level_ids)
    following = labels[:, 1:]
    rows, cols = torch.nonzero(following != IGNORE_INDEX, as_tuple=True)
    targets = following[rows, cols].clone()
    is_level = is_score[rows] & (cols == level_positions[rows] - 1)
    if kl != "none":
        targets[is_level] = IGNORE_INDEX
    return SupervisedPositions(rows, cols, targets, is_level, is_score)


def packed_loss_sums(
    logits: Tensor,
    picked: SupervisedPositions,
    level_probs: Tensor,
    level_ids: Tensor,
    *,
    kl: KLMode = "open",
) -> LossSums:
    """:func:`loss_sums` from the logits at the :func:`supervised_positions` only.

    Args:
        logits: ``[N, V]`` full-vocabulary logits at ``picked.rows, picked.cols``.
        picked: the positions.
        level_probs / level_ids / kl: as for :func:`loss_sums`.

    Returns:
        The same sums and counts :func:`loss_sums` gives on the full logits.

    Raises:
        ValueError: ``logits`` does not have one row per picked position.
    """
    if logits.dim() != 2 or logits.shape[0] != picked.rows.shape[0]:
        raise ValueError(
            f"logits must be [{picked.rows.shape[0]}, V] (one row per picked position); got "
            f"{tuple(logits.shape)}"
        )
    zero = logits.new_zeros((), dtype=torch.float32)
    token_ce = F.cross_entropy(
        logits.float(), picked.targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    supervised = picked.targets != IGNORE_INDEX
    from_score = picked.is_score[picked.rows]
    if kl == "none" or not bool(picked.is_level.any()):
        kl_sum = zero
    else:
        rows = picked.rows[picked.is_level]
        kl_sum = level_kl(logits[picked.is_level], level_probs[rows], level_ids, kl=kl).sum()
    return LossSums(
        description_ce_sum=token_ce[~from_score].sum() if bool((~from_score).any()) else zero,
        description_tokens=(supervised & ~from_score).sum(),
        score_ce_sum=token_ce[from_score].sum() if bool(from_score.any()) else zero,
        score_tokens=(supervised & from_score).sum(),
        kl_sum=kl_sum,
        score_rows=picked.is_score.sum(),
    )


def level_kl(
    level_logits: Tensor,
    level_probs: Tensor,
    level_ids: Tensor,
    *,
    kl: Literal["open", "closed"] = "open",
) -> Tensor:
    """Per-row ``KL(q || p)`` between soft level targets and the model at the level position.

    Args:
        level_logits: ``[N, V]`` full-vocabulary logits at the positions predicting the level.
        level_probs: ``[N, K]`` targets ``q`` on the level ids (rows sum to 1; zeros allowed,
            ``0 · log 0 = 0``).
        level_ids: ``[K]`` level token ids.
        kl: ``open`` = ``p`` is the softmax over all ``V`` logits; ``closed`` = over the ``K``
            level logits only.

    Returns:
        ``[N]`` KL values in nats (float32).

    Raises:
        ValueError: a target row is negative or does not sum to 1 (within 1e-3).

    Example:
        >>> logits = torch.log(torch.tensor([[0.6, 0.1, 0.3]]))  # p(level ids 0, 1) = 0.6, 0.1
        >>> q = torch.tensor([[0.75, 0.25]])
        >>> # 0.75 ln(0.75 / 0.6) + 0.25 ln(0.25 / 0.1)
        >>> round(float(level_kl(logits, q, torch.tensor([0, 1]))[0]), 4)
        0.3964
    """
    q = level_probs.to(torch.float32)
    if q.numel() and ((q < 0).any() or (q.sum(dim=-1) - 1).abs().max() > 1e-3):
        raise ValueError(f"level_probs rows must be distributions; got {q.tolist()}")
    z = level_logits.float()
    if kl == "open":
        log_p = torch.log_softmax(z, dim=-1)[:, level_ids]
    elif kl == "closed":
        log_p = torch.log_softmax(z[:, level_ids], dim=-1)
    else:
        raise ValueError(f"kl must be 'open' or 'closed', got {kl!r}")
    return (torch.xlogy(q, q) - q * log_p).sum(dim=-1)


def combine_losses(
    sums: LossSums,
    weights: LossWeights = LossWeights(),
    totals: Tensor | None = None,
) -> Tensor:
    """Weight and normalise the terms: ``w_desc·CE_desc + w_next·(CE_score + w_kl·KL)``.

    Args:
        sums: the output of :func:`loss_sums`.
        weights: the three weights.
        totals: the denominators ``[description_tokens, score_tokens, score_rows]`` to divide
            by, e.g. summed over all micro-batches of a step and all processes; ``None`` uses
            this batch's own counts (a plain per-batch mean). A zero count makes its term 0.

    Returns:
        The scalar loss.

    Example:
        >>> import torch
        >>> s = LossSums(*(torch.tensor(v) for v in (4.0, 2, 3.0, 3, 0.5, 1)))
        >>> round(float(combine_losses(s)), 6)  # 4/2 + 0.05 * (3/3 + 0.5/1)
        2.075
    """
    denominators = sums.counts() if totals is None else totals.to(torch.float64)
    if denominators.shape != (3,):
        raise ValueError(f"totals must have 3 entries, got {tuple(denominators.shape)}")
    d_desc, d_score, d_rows = (float(x) for x in denominators.clamp(min=1).tolist())
    description = sums.description_ce_sum / d_desc
    score = sums.score_ce_sum / d_score + weights.kl * (sums.kl_sum / d_rows)
    return weights.description * description + weights.next_token * score


def loss_terms(sums: Tensor, counts: Tensor) -> dict[str, float]:
    """Mean loss terms for logging from summed :meth:`LossSums.detached_sums` and counts.

    Args:
        sums: ``[3]`` summed (description CE, score CE, KL).
        counts: ``[3]`` summed (description tokens, score tokens, score rows).

    Returns:
        ``{"ce_description": ..., "ce_score": ..., "kl": ...}``; NaN where a count is 0.
    """
    names = ("ce_description", "ce_score", "kl")
    out: dict[str, float] = {}
    for name, total, count in zip(names, sums.tolist(), counts.tolist(), strict=True):
        out[name] = total / count if count > 0 else float("nan")
    return out


__all__ = [
    "IGNORE_INDEX",
    "KLMode",
    "LossSums",
    "LossWeights",
    "SupervisedPositions",
    "combine_losses",
    "count_answer_tokens",
    "level_kl",
    "loss_sums",
    "loss_terms",
    "packed_loss_sums",
    "supervised_positions",
]
