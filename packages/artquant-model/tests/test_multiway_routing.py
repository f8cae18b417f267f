"""Multiway routing: worked out once per forward, and equal to routing each token by its mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import ModalityRouting, MultiwayNetwork
from artquant_model.testing import tiny_model

WIDTH_IN, WIDTH_OUT = 6, 4


def _network(seed: int = 0) -> MultiwayNetwork:
    torch.manual_seed(seed)
    return MultiwayNetwork(lambda: nn.Linear(WIDTH_IN, WIDTH_OUT))


def _per_token_reference(net: MultiwayNetwork, x: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    rows = [
        net.multiway[int(ind[b, t])](x[b, t]) for b in range(x.shape[0]) for t in range(x.shape[1])
    ]
    return torch.stack(rows).reshape(x.shape[0], x.shape[1], WIDTH_OUT)


@pytest.mark.parametrize(
    "indicators",
    [
        [[0, 0, 1, 1, 0], [1, 0, 0, 1, 1]],  # mixed
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],  # text only
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],  # image only
    ],
)
def test_routing_equals_a_per_token_reference(indicators: list[list[int]]) -> None:
    net = _network()
    ind = torch.tensor(indicators)
    x = torch.randn(2, 5, WIDTH_IN, generator=torch.Generator().manual_seed(1))
    expected = _per_token_reference(net, x, ind)
    by_mask = net(x, ind)
    by_routing = net(x, ModalityRouting.from_indicators(ind))
    torch.testing.assert_close(by_mask, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(by_routing, by_mask, rtol=0, atol=0)


def test_uniform_routing_names_the_branch_and_mixed_routing_lists_positions() -> None:
    assert ModalityRouting.from_indicators(torch.ones(2, 3, dtype=torch.long)).uniform == 1
    mixed = ModalityRouting.from_indicators(torch.tensor([[0, 1], [1, 0]]))
    assert mixed.uniform is None
    assert [p.tolist() for p in mixed.indices] == [[0, 3], [1, 2]]


def test_gradients_flow_to_both_branches_through_the_routing() -> None:
    net = _network()
    ind = torch.tensor([[0, 1, 1, 0]])
    x = torch.randn(1, 4, WIDTH_IN, requires_grad=True)
    net(x, ModalityRouting.from_indicators(ind)).square().sum().backward()
    reference = _network()
    x_ref = x.detach().clone().requires_grad_(True)
    _per_token_reference(reference, x_ref, ind).square().sum().backward()
    assert x.grad is not None
    assert x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-6)
    for mine, theirs in zip(net.parameters(), reference.parameters(), strict=True):
        assert mine.grad is not None
        assert theirs.grad is not None
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=0, atol=1e-6)


def test_a_forward_works_out_the_routing_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    calls: list[int] = []
    original = ModalityRouting.from_indicators.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ModalityRouting], indicators: torch.Tensor, *args: int):
        calls.append(1)
        return original(cls, indicators, *args)

    monkeypatch.setattr(ModalityRouting, "from_indicators", classmethod(counting))
    ids = torch.tensor([[1, 5, -200, 7, 8]])
    images = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(input_ids=ids, images=images)
    # one routing for all layers' k/v projections and norms (4 multiway modules per layer),
    # where routing by mask in each module would work it out 4 * num_hidden_layers times
    assert len(calls) == 1
