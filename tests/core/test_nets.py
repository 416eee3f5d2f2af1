"""D4 group convolutions: exact equivariance of each layer and exact invariance of the network."""

import pytest
import torch

from astrobench.core.nets import (
    D4_INV,
    D4_MUL,
    D4ConvNet,
    D4GroupConv,
    D4LiftingConv,
    D4MaxPool,
    Standardize,
    d4_transform,
)


def _transform_group_map(y: torch.Tensor, u: int) -> torch.Tensor:
    """How a D4 feature map (B, C, 8, H, W) moves when the input moves by u: out'(g) = T_u out(u^-1 g)."""
    return torch.stack([d4_transform(y[:, :, D4_MUL[D4_INV[u]][g]], u) for g in range(8)], dim=2)


def test_d4_tables_form_a_group():
    for a in range(8):
        assert D4_MUL[a][0] == a and D4_MUL[0][a] == a and D4_MUL[a][D4_INV[a]] == 0
        for b in range(8):
            for c in range(8):
                assert D4_MUL[D4_MUL[a][b]][c] == D4_MUL[a][D4_MUL[b][c]]
    assert len({D4_MUL[1][3], D4_MUL[3][1]}) == 1  # rotations commute
    assert D4_MUL[4][1] != D4_MUL[1][4]  # a flip and a rotation do not: D4 is not abelian


@pytest.mark.parametrize("u", range(8))
def test_lifting_and_group_convolutions_are_equivariant(u):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    lift = D4LiftingConv(3, 4).double()
    group = D4GroupConv(4, 5).double()
    pool = D4MaxPool()
    y = group(pool(lift(x)))
    y_moved = group(pool(lift(d4_transform(x, u))))
    torch.testing.assert_close(y_moved, _transform_group_map(y, u), atol=1e-10, rtol=1e-10)


def test_d4_network_is_invariant_to_rotations_and_flips():
    torch.manual_seed(0)
    net = D4ConvNet(1, 1, widths=(4, 8, 8)).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        ref = net(x)
        for g in range(1, 8):
            torch.testing.assert_close(net(d4_transform(x, g)), ref, atol=1e-5, rtol=1e-5)


def test_d4_network_trains_and_has_gradients():
    net = D4ConvNet(1, 1, widths=(4, 8))
    out = net(torch.rand(2, 1, 32, 32))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd kernel"):
        D4GroupConv(2, 2, kernel_size=4)


def test_standardize_keeps_its_statistics_in_the_state_dict():
    s = Standardize([1.0, 2.0], [2.0, 4.0])
    assert set(s.state_dict()) == {"mean", "std"}
    torch.testing.assert_close(s(torch.tensor([[3.0, 6.0]])), torch.tensor([[1.0, 1.0]]))
