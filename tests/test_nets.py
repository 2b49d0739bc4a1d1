"""Network building blocks: the batched ensemble is exactly N separate networks."""

import pytest
import torch
from torch import nn

from agents.nets import (
    EnsembleMLP,
    EnsembleSimba,
    ImpalaCNN,
    ImpalaResidual,
    ResidualBlock,
    RunningNorm,
    mlp,
    simba,
    soft_update,
    update_autocast,
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
    # U(-b, b) with b = 1/sqrt(fan_in). The largest of N uniform |w| falls below f * b with
    # probability f^N: 0.99^5000 ~ 1.5e-22 for a layer-0 member (100 x 50), 0.6^50 ~ 8e-12 for
    # a layer-1 member (50 x 1). So each member's max |w| lies in [f * b, b], or init is wrong.
    for layer, fan_in, f in ((ens.layers[0], 100, 0.99), (ens.layers[1], 50, 0.6)):
        w, bound = layer.weight.detach(), 1 / fan_in**0.5  # 2 x fan_in x fan_out
        assert w.shape[:2] == (2, fan_in)
        assert not torch.equal(w[0], w[1])
        for member in w:
            assert f * bound <= member.abs().max() <= bound


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


# ---- IMPALA-CNN ----


def _frames(n: int, seed: int) -> torch.Tensor:
    """n random Procgen-like frames: uint8, N x 64 x 64 x 3 (channels last, as the env gives)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=gen)


def test_impala_shapes_64x64_frames_to_256_features():
    torch.manual_seed(10)
    enc = ImpalaCNN()
    obs = _frames(3, seed=0)
    # Three stride-2 pools (3x3, padding 1): 64 -> 32 -> 16 -> 8, so 32 x 8 x 8 = 2048 features.
    assert enc.conv_features(obs).shape == (3, 32, 8, 8)
    assert enc.feature_shape == (32, 8, 8) and enc.dense.in_features == 2048
    out = enc(obs)
    assert out.shape == (3, 256) and enc.out_dim == 256
    assert out.dtype == torch.float32 and (out >= 0).all()  # ends with a ReLU
    # Leading dimensions (T x N rollouts) are kept; a wrong frame shape is one clear error.
    assert enc(obs.reshape(1, 3, 64, 64, 3)).shape == (1, 3, 256)
    with pytest.raises(ValueError, match="64, 64, 3"):
        enc(obs.permute(0, 3, 1, 2))  # N x C x H x W is not what the env gives


def test_impala_parameter_count_by_hand():
    enc = ImpalaCNN()

    def conv(c_in, c_out):  # 3x3 weights + biases
        return 9 * c_in * c_out + c_out

    def stage(c_in, c_out):  # first conv + two residual blocks of two convs each
        return conv(c_in, c_out) + 4 * conv(c_out, c_out)

    # 3 -> 16: 448 + 4 * 2320 = 9728; 16 -> 32: 4640 + 4 * 9248 = 41632; 32 -> 32: 46240.
    assert [stage(3, 16), stage(16, 32), stage(32, 32)] == [9728, 41632, 46240]
    dense = 2048 * 256 + 256  # 524544
    count = sum(p.numel() for p in enc.parameters())
    assert sum(p.numel() for p in enc.stages.parameters()) == 97600
    assert count == 97600 + dense == 622144


def test_impala_channels_last_same_output_and_gradients_as_channels_first():
    torch.manual_seed(11)
    first = ImpalaCNN(channels_last=False)
    last = ImpalaCNN(channels_last=True)
    last.load_state_dict(first.state_dict())
    assert last.stages[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    obs = _frames(4, seed=1)
    assert last.conv_features(obs).is_contiguous(memory_format=torch.channels_last)
    assert first.conv_features(obs).is_contiguous()
    out_first, out_last = first(obs), last(obs)
    torch.testing.assert_close(out_last, out_first, rtol=1e-4, atol=1e-5)
    out_first.pow(2).sum().backward()
    out_last.pow(2).sum().backward()
    for (name, p_first), p_last in zip(first.named_parameters(), last.parameters()):
        torch.testing.assert_close(p_last.grad, p_first.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_impala_uint8_frames_equal_float_frames_divided_by_255():
    torch.manual_seed(12)
    for channels_last in (False, True):
        enc = ImpalaCNN(channels_last=channels_last)
        obs = _frames(2, seed=2)
        torch.testing.assert_close(enc(obs), enc(obs.float() / 255.0))
        # ... and not the same as unscaled frames: the scaling really happens inside.
        assert not torch.allclose(enc(obs), enc(obs.float()))


def test_impala_gradients_reach_every_parameter():
    torch.manual_seed(13)
    enc = ImpalaCNN(channels_last=True)
    head = torch.nn.Linear(256, 16)
    head(enc(_frames(4, seed=3))).pow(2).mean().backward()
    params = dict(enc.named_parameters())
    assert len(params) == 3 * (2 + 4 * 2) + 2  # 15 convs + dense, weight and bias each
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_impala_residual_block_matches_its_formula():
    torch.manual_seed(14)
    block = ImpalaResidual(4)
    x = torch.randn(2, 4, 5, 5)
    conv = torch.nn.functional.conv2d
    hidden = conv(x.clamp(min=0), block.conv0.weight, block.conv0.bias, padding=1)
    expected = x + conv(hidden.clamp(min=0), block.conv1.weight, block.conv1.bias, padding=1)
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == x.shape


def test_impala_bf16_autocast_close_to_fp32():
    torch.manual_seed(15)
    enc = ImpalaCNN(channels_last=True)
    obs = _frames(4, seed=4)
    exact = enc(obs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = enc(obs)
    assert approx.dtype == torch.bfloat16  # the convolutions and dense layer ran in bf16
    assert not torch.equal(approx.float(), exact)
    # bf16 keeps ~3 significant digits; errors stay far below the features' scale (~0.1).
    torch.testing.assert_close(approx.float(), exact, rtol=0.05, atol=0.01)
    approx.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in enc.parameters())


def test_update_autocast_sees_in_place_weight_changes_inside_one_region():
    torch.manual_seed(0)
    layers = [nn.Linear(8, 8), nn.Conv2d(3, 4, 3)]
    inputs = [torch.randn(2, 8), torch.randn(1, 3, 8, 8)]
    for layer, x in zip(layers, inputs):
        with update_autocast("cpu", True):
            before = layer(x)
            assert before.dtype == torch.bfloat16
            with torch.no_grad():
                layer.weight.mul_(2.0)  # what an optimizer step does: in place
            after = layer(x)
        with update_autocast("cpu", True):
            fresh = layer(x)
        assert not torch.equal(before, after) and torch.equal(after, fresh)
    with update_autocast("cpu", False):
        assert layers[0](inputs[0]).dtype == torch.float32
