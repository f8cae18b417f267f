"""The loss terms against values computed by hand from chosen probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from artquant_train.losses import (
    LossSums,
    LossWeights,
    combine_losses,
    count_answer_tokens,
    level_kl,
    loss_sums,
    loss_terms,
)

LEVEL_IDS = torch.tensor([2, 0])
# Row 0 is a score sample whose level token (id 2) sits at label index 3; row 1 a description.
LABELS = torch.tensor([[-100, -100, 1, 2, 3], [-100, 0, 1, -100, -100]])
LEVEL_POSITIONS = torch.tensor([3, -1])
LEVEL_PROBS = torch.tensor([[0.75, 0.25], [0.0, 0.0]])


def _logits() -> torch.Tensor:
    """Logits whose softmax is a chosen distribution at every position (log of probabilities)."""
    uniform = [0.25, 0.25, 0.25, 0.25]
    probs = torch.tensor(
        [
            [
                uniform,
                [0.2, 0.5, 0.2, 0.1],
                [0.1, 0.2, 0.6, 0.1],
                [0.25, 0.25, 0.25, 0.25],
                uniform,
            ],
            [[0.4, 0.2, 0.2, 0.2], [0.1, 0.8, 0.05, 0.05], uniform, uniform, uniform],
        ],
        dtype=torch.float64,
    )
    return probs.log().float()


def test_terms_match_hand_computed_values() -> None:
    sums = loss_sums(_logits(), LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS)
    # score answer: label 1 predicted with p=0.5, label 3 with p=0.25; the level token is left out
    assert float(sums.score_ce_sum) == pytest.approx(math.log(2) + math.log(4), abs=1e-6)
    assert int(sums.score_tokens) == 2
    # description answer: label 0 with p=0.4, label 1 with p=0.8; padding ignored
    assert float(sums.description_ce_sum) == pytest.approx(-math.log(0.4) - math.log(0.8), abs=1e-6)
    assert int(sums.description_tokens) == 2
    # open-set KL at the position predicting the level: p(level ids) = (0.6, 0.1) of the vocab
    kl = 0.75 * math.log(0.75 / 0.6) + 0.25 * math.log(0.25 / 0.1)
    assert float(sums.kl_sum) == pytest.approx(kl, abs=1e-6)
    assert int(sums.score_rows) == 1


def test_closed_set_kl_renormalises_over_level_words() -> None:
    sums = loss_sums(_logits(), LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS, kl="closed")
    kl = 0.75 * math.log(0.75 / (0.6 / 0.7)) + 0.25 * math.log(0.25 / (0.1 / 0.7))
    assert float(sums.kl_sum) == pytest.approx(kl, abs=1e-6)


def test_kl_none_keeps_the_level_token_in_the_cross_entropy() -> None:
    sums = loss_sums(_logits(), LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS, kl="none")
    assert float(sums.score_ce_sum) == pytest.approx(
        math.log(2) - math.log(0.6) + math.log(4), abs=1e-6
    )
    assert int(sums.score_tokens) == 3
    assert float(sums.kl_sum) == 0.0


def test_masking_equals_deleting_label_and_predicting_logit_before_the_shift() -> None:
    """The original removes the level label and the logit before it, then shifts."""
    torch.manual_seed(0)
    logits = torch.randn(1, 7, 11)
    labels = torch.tensor([[-100, -100, 4, 5, 9, 6, 2]])
    p = 4  # level token id 9
    kept_labels = torch.cat([labels[:, :p], labels[:, p + 1 :]], dim=1)
    kept_logits = torch.cat([logits[:, : p - 1], logits[:, p:]], dim=1)
    reference = torch.nn.functional.cross_entropy(
        kept_logits[0, :-1], kept_labels[0, 1:], ignore_index=-100, reduction="sum"
    )
    sums = loss_sums(
        logits, labels, torch.tensor([p]), torch.tensor([[1.0, 0.0]]), torch.tensor([9, 3])
    )
    assert float(sums.score_ce_sum) == pytest.approx(float(reference), abs=1e-5)
    assert int(sums.score_tokens) == 4


def test_combine_applies_the_recipe_weights() -> None:
    sums = loss_sums(_logits(), LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS)
    description = (-math.log(0.4) - math.log(0.8)) / 2
    score = (math.log(2) + math.log(4)) / 2
    kl = 0.75 * math.log(0.75 / 0.6) + 0.25 * math.log(0.25 / 0.1)
    expected = 1.0 * description + 0.05 * (score + 1.0 * kl)
    assert float(combine_losses(sums)) == pytest.approx(expected, abs=1e-6)
    custom = combine_losses(sums, LossWeights(description=0.5, next_token=2.0, kl=3.0))
    assert float(custom) == pytest.approx(0.5 * description + 2.0 * (score + 3.0 * kl), abs=1e-6)


def test_split_batches_with_global_counts_equal_the_whole_batch() -> None:
    """Two 'processes', one without score rows, sum to the single-batch loss and gradient."""
    base = _logits()
    whole = base.clone().requires_grad_(True)
    loss_whole = combine_losses(loss_sums(whole, LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS))
    loss_whole.backward()

    split = base.clone().requires_grad_(True)
    parts = [
        loss_sums(
            split[i : i + 1],
            LABELS[i : i + 1],
            LEVEL_POSITIONS[i : i + 1],
            LEVEL_PROBS[i : i + 1],
            LEVEL_IDS,
        )
        for i in range(2)
    ]
    totals = parts[0].counts() + parts[1].counts()
    assert totals.tolist() == count_answer_tokens(LABELS, LEVEL_POSITIONS).tolist()
    loss_split = sum(combine_losses(part, totals=totals) for part in parts)
    assert isinstance(loss_split, torch.Tensor)
    loss_split.backward()
    assert float(loss_split.detach()) == pytest.approx(float(loss_whole.detach()), abs=1e-6)
    assert whole.grad is not None
    assert split.grad is not None
    torch.testing.assert_close(split.grad, whole.grad, atol=1e-7, rtol=1e-6)


def test_batch_without_score_rows_has_zero_score_terms() -> None:
    sums = loss_sums(_logits()[1:], LABELS[1:], LEVEL_POSITIONS[1:], LEVEL_PROBS[1:], LEVEL_IDS)
    assert int(sums.score_rows) == 0
    assert float(sums.kl_sum) == 0.0
    assert float(combine_losses(sums)) == pytest.approx((-math.log(0.4) - math.log(0.8)) / 2)


def test_count_answer_tokens_matches_loss_sums_for_every_mode() -> None:
    for mode in ("open", "closed", "none"):
        sums = loss_sums(_logits(), LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS, kl=mode)
        counted = count_answer_tokens(LABELS, LEVEL_POSITIONS, kl=mode)
        assert counted.tolist() == sums.counts().tolist()


def test_loss_terms_reports_means_and_nan_for_missing_terms() -> None:
    terms = loss_terms(torch.tensor([3.0, 2.0, 0.0]), torch.tensor([3.0, 4.0, 0.0]))
    assert terms["ce_description"] == 1.0
    assert terms["ce_score"] == 0.5
    assert math.isnan(terms["kl"])


def test_level_kl_handles_zero_targets_and_is_zero_at_the_target() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0]])
    logits = torch.tensor([[100.0, -100.0, -100.0, -100.0]])
    assert float(level_kl(logits, q, torch.tensor([0, 1, 2]))) == pytest.approx(0.0, abs=1e-6)


def test_errors_name_the_bad_values() -> None:
    logits = _logits()
    with pytest.raises(ValueError, match="not level ids"):
        loss_sums(logits, LABELS, torch.tensor([2, -1]), LEVEL_PROBS, LEVEL_IDS)
    with pytest.raises(ValueError, match=r"level positions must lie in \[1, 4\]"):
        loss_sums(logits, LABELS, torch.tensor([5, -1]), LEVEL_PROBS, LEVEL_IDS)
    with pytest.raises(ValueError, match="must be distributions"):
        loss_sums(logits, LABELS, LEVEL_POSITIONS, torch.tensor([[0.5, 0.2], [0, 0]]), LEVEL_IDS)
    with pytest.raises(ValueError, match=r"logits must be \[B, L, V\]"):
        loss_sums(logits[:, :3], LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS)
    with pytest.raises(ValueError, match="kl must be"):
        loss_sums(logits, LABELS, LEVEL_POSITIONS, LEVEL_PROBS, LEVEL_IDS, kl="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="totals must have 3"):
        combine_losses(LossSums(*(torch.tensor(0.0) for _ in range(6))), totals=torch.zeros(2))
