"""Network building blocks: the batched ensemble is exactly N separate networks."""

import pytest
import torch

from agents.nets import (
    EnsembleMLP,
    EnsembleSimba,
    ResidualBlock,
    RunningNorm,
    mlp,
    simba,
    soft_update,
)


def test_ensemble_equals_separate_networks_forward_and_gradients():
    torch.manual_seed(0)
    members, in_dim, hidden = 3, 7, [16, 12]
    ens = EnsembleMLP(members, in_dim, 2, hidden)
    nets = [mlp(in_dim, 2, hidden) for _ in range(members)]
    for i, net in enumerate(nets):
        ens.load_member(i, net)
    x = torch.randn(5, in_dim)

    out = ens(x)  # E x B x 2
    assert out.shape == (members, 5, 2)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(x), rtol=1e-5, atol=1e-6)

    # Per-member inputs (E x B x in) give the same as feeding each network its own batch.
    xs = torch.randn(members, 5, in_dim)
    out = ens(xs)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(xs[i]), rtol=1e-5, atol=1e-6)

    # Gradients of a summed loss land on each member exactly as on the separate networks.
    ens(x).pow(2).sum().backward()
    sum(net(x).pow(2).sum() for net in nets).backward()
    for i, net in enumerate(nets):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for layer, lin in zip(ens.layers, linears):
            tol = {"rtol": 1e-4, "atol": 1e-6}
            torch.testing.assert_close(layer.weight.grad[i], lin.weight.grad.T, **tol)
            torch.testing.assert_close(layer.bias.grad[i, 0], lin.bias.grad, **tol)


def test_member_slice_evaluates_only_those_members():
    torch.manual_seed(1)
    ens = EnsembleMLP(4, 3, 1, [8])
    x = torch.randn(6, 3)
    full = ens(x)
    torch.testing.assert_close(ens(x, members=slice(1, 3)), full[1:3])
    torch.testing.assert_close(ens(x, members=slice(0, 1)), full[:1])


def test_members_are_initialised_independently_with_linear_default_bounds():
    torch.manual_seed(2)
    ens = EnsembleMLP(2, 100, 1, [50])
    w = ens.layers[0].weight  # 2 x 100 x 50
    assert not torch.equal(w[0], w[1])
    assert w.abs().max() <= 1 / 100**0.5  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))


def test_soft_update_is_polyak_average():
    a, b = mlp(2, 1, [3]), mlp(2, 1, [3])
    before = [p.clone() for p in a.parameters()]
    soft_update(a, b, tau=0.25)
    for pa, p0, pb in zip(a.parameters(), before, b.parameters()):
        torch.testing.assert_close(pa, 0.75 * p0 + 0.25 * pb)
    soft_update(a, b, tau=1.0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_bf16_autocast_keeps_q_outputs_fp32_and_close():
    torch.manual_seed(3)
    ens = EnsembleMLP(2, 14, 1, [256, 256])
    x = torch.randn(64, 14)
    exact = ens(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = ens(x)
    assert approx.dtype == torch.float32
    assert not torch.equal(approx, exact)  # the hidden layers really ran in bf16
    torch.testing.assert_close(approx, exact, rtol=0.05, atol=0.02)
    approx.sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in ens.parameters())


def test_running_norm_statistics_after_known_inputs():
    norm = RunningNorm(2)
    data = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 40.0], [7.0, 20.0]])
    norm.update(data[:1])
    norm.update(data[1:3])  # batches of any size merge into the same moments
    norm.update(data[3:])
    # The prior count of 1e-4 at mean 0 / var 1 leaves a trace of order 1e-4.
    torch.testing.assert_close(
        norm.mean, torch.tensor([4.0, 20.0], dtype=torch.float64), rtol=0, atol=1e-3
    )
    torch.testing.assert_close(
        norm.var, torch.tensor([5.0, 150.0], dtype=torch.float64), rtol=1e-4, atol=1e-3
    )
    out = norm(torch.tensor([[4.0, 20.0], [4.0 + 5**0.5, 20.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 0.0]]), rtol=0, atol=1e-3)


def test_residual_block_matches_its_formula():
    torch.manual_seed(4)
    block = ResidualBlock(6)
    x = torch.randn(3, 6)
    ln = (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    hidden = torch.relu(ln @ block.up.weight.T + block.up.bias)  # B x 4h
    torch.testing.assert_close(block(x), x + hidden @ block.down.weight.T + block.down.bias)
    assert block.up.out_features == 24


def test_simba_ensemble_equals_separate_networks():
    torch.manual_seed(5)
    ens = EnsembleSimba(3, 5, 1, [8, 8])
    nets = [simba(5, 1, [8, 8]) for _ in range(3)]
    for i, net in enumerate(nets):
        with torch.no_grad():  # non-default LayerNorm affines, so copying them is tested
            for module in net:
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
        ens.load_member(i, net)
    x = torch.randn(4, 5)
    out = ens(x)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ens(x, members=slice(1, 2))[0], nets[1](x), rtol=1e-5, atol=1e-5)


def test_simba_layout_and_init():
    net = simba(7, 2, [16, 16, 16])
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3 and isinstance(net[-2], torch.nn.LayerNorm)
    embed = net[0].weight  # 16 x 7, orthogonal rows
    torch.testing.assert_close(embed.T @ embed, torch.eye(7), rtol=0, atol=1e-5)
    ens = EnsembleSimba(2, 7, 1, [16])
    w = ens.embed.weight[1]  # 7 x 16 (in x out)
    torch.testing.assert_close(w @ w.T, torch.eye(7), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="equal width"):
        simba(7, 2, [16, 32])
