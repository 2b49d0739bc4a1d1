"""Network building blocks: the batched ensemble is exactly N separate networks."""

import torch

from agents.nets import EnsembleMLP, mlp, soft_update


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
