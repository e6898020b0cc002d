"""The bijection contract, checked for every layer and both whole flows in float64."""

import pytest
import torch

from usfad.flows import (
    FLOWS,
    USF_FLOWS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Conjugate,
    DepthToSpace,
    FixedLinear,
    GINCoupling,
    LUConv1x1,
    LULinear,
    Permutation,
    Scale,
    Sequential,
    build_flow,
    conv,
    is_usf,
    mlp,
)
from usfad.flows.base import autodiff_jvp


def _perturb(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Move every parameter away from its (identity) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _actnorm(features):
    layer = ActNorm(features)
    layer.train()
    layer(torch.randn(32, features) * 3 + 1)  # data-dependent initialisation
    return layer


VECTOR_CASES = {
    "lu_linear": lambda: LULinear(5),
    "permutation": lambda: Permutation(5),
    "scale": lambda: Scale(5),
    "actnorm": lambda: _actnorm(5),
    "additive": lambda: AdditiveCoupling(5, mlp((8,))),
    "additive_swap": lambda: AdditiveCoupling(5, mlp((8,)), swap=True),
    "affine": lambda: AffineCoupling(5, mlp((8,)), clamp=1.9),
    "affine_swap": lambda: AffineCoupling(5, mlp((8,)), swap=True),
    "additive_1d": lambda: AdditiveCoupling(1, mlp((8,))),
    "gin": lambda: GINCoupling(5, mlp((8,)), clamp=1.9),
    "gin_swap": lambda: GINCoupling(5, mlp((8,)), swap=True),
    "gin_1d": lambda: GINCoupling(1, mlp((8,))),
    "conjugate_additive": lambda: Conjugate(AdditiveCoupling(5, mlp((8,))), LULinear(5)),
    "usf": lambda: build_flow(5, "usf", n_blocks=3, hidden_features=(8, 8)),
    "affine_flow": lambda: build_flow(5, "affine", n_blocks=3, hidden_features=(8, 8)),
    "usf_gin": lambda: build_flow(5, "usf-gin", n_blocks=3, hidden_features=(8, 8)),
    "usf_1d": lambda: build_flow(1, "usf", n_blocks=2, hidden_features=(4,)),
}

MAP_CASES = {
    "lu_conv1x1": lambda: LUConv1x1(2),
    "actnorm_map": lambda: _actnorm_map(2),
    "scale_map": lambda: Scale(2),
    "additive_conv": lambda: AdditiveCoupling(2, conv(4)),
    "affine_conv": lambda: AffineCoupling(2, conv(4)),
    "usf_conv": lambda: build_flow(2, "usf", n_blocks=2, subnet=conv(4)),
    "affine_conv_flow": lambda: build_flow(2, "affine", n_blocks=2, subnet=conv(4)),
    "usf_conv_actnorm_3x3_1x1": lambda: build_flow(2, "usf", n_blocks=3, subnet=[conv(4, 3), conv(4, 1)], actnorm=True),
    "affine_conv_actnorm_3x3_1x1": lambda: build_flow(
        2, "affine", n_blocks=3, subnet=[conv(4, 3), conv(4, 1)], actnorm=True
    ),
    "depth_to_space": lambda: DepthToSpace(2),
    # three channels: a GIN coupling on two channels transforms one, whose centred log-scale is 0
    "gin_conv": lambda: GINCoupling(3, conv(4)),
    "usf_gin_conv_actnorm_3x3_1x1": lambda: build_flow(
        3, "usf-gin", n_blocks=3, subnet=[conv(4, 3), conv(4, 1)], actnorm=True
    ),
}

#: input shape per case when it is not (3, 2, 1, 3); 6 numbers per sample either way
MAP_SHAPES = {
    "depth_to_space": (3, 4, 1, 1),
    "gin_conv": (3, 3, 1, 2),
    "usf_gin_conv_actnorm_3x3_1x1": (3, 3, 1, 2),
}


def _actnorm_map(channels):
    layer = ActNorm(channels)
    layer.train()
    layer(torch.randn(8, channels, 3, 3) * 2 - 1)
    return layer


def _case(factory, seed=0):
    torch.manual_seed(seed)
    module = _perturb(factory()).double()
    module.eval()
    return module


def _case_and_input(name):
    """A case of MAP_CASES or VECTOR_CASES and a random input batch of its shape."""
    if name in MAP_CASES:
        return _case(MAP_CASES[name]), torch.randn(MAP_SHAPES.get(name, (3, 2, 1, 3)))
    return _case(VECTOR_CASES[name]), torch.randn(6, 1 if "1d" in name else 5)


@pytest.mark.parametrize("name", sorted(VECTOR_CASES))
def test_vector_bijection_inverts_and_reports_exact_logdet(name, float64):
    f = _case(VECTOR_CASES[name])
    d = 5 if "1d" not in name else 1
    x = torch.randn(6, d)
    y, logdet = f(x)
    assert logdet.shape == (6,)
    assert torch.allclose(f.inverse(y), x, atol=1e-6)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0][0], x[i])
        assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[i], atol=1e-6)


@pytest.mark.parametrize("name", sorted(MAP_CASES) + sorted(VECTOR_CASES))
def test_per_position_logdet_sums_to_the_logdet(name, float64):
    f, x = _case_and_input(name)
    y, logdet = f(x)
    y_pos, per_position = f.forward_positions(x)
    assert torch.equal(y_pos, y)
    assert per_position.shape == y.shape[:1] + y.shape[2:]
    assert torch.allclose(per_position.reshape(len(y), -1).sum(1), logdet, atol=1e-9)


@pytest.mark.parametrize("flow", FLOWS)
def test_per_position_logdet_is_each_positions_own_jacobian(flow, float64):
    """With 1x1 conditioners every layer acts on each position alone, so the Jacobian is
    block-diagonal over positions and each block's log-det is that position's share."""
    f = _case(lambda: build_flow(3, flow, n_blocks=3, subnet=conv(4, 1), actnorm=True))
    x = torch.randn(2, 3, 2, 2)
    _, per_position = f.forward_positions(x)
    jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0][0], x[0])  # (3, 2, 2, 3, 2, 2)
    own = torch.stack([torch.linalg.slogdet(jac[:, i, j, :, i, j])[1] for i in range(2) for j in range(2)])
    assert torch.allclose(per_position[0].flatten(), own, atol=1e-9)
    if flow == "affine":
        assert own.std() > 1e-3  # the shares differ between positions: not spread evenly by construction


def test_per_position_logdet_refuses_layers_that_move_positions():
    f = Sequential([LUConv1x1(4), DepthToSpace(2), LUConv1x1(1)])
    with pytest.raises(ValueError, match="moves positions"):
        f.forward_positions(torch.randn(2, 4, 1, 1))


@pytest.mark.parametrize("name", sorted(MAP_CASES))
def test_feature_map_bijection_inverts_and_reports_exact_logdet(name, float64):
    f = _case(MAP_CASES[name])
    x = torch.randn(MAP_SHAPES.get(name, (3, 2, 1, 3)))
    y, logdet = f(x)
    assert y.shape[0] == 3 and y[0].numel() == x[0].numel() and logdet.shape == (3,)
    if name != "depth_to_space":
        assert y.shape == x.shape
    assert torch.allclose(f.inverse(y), x, atol=1e-6)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0][0], x[i]).reshape(x[0].numel(), -1)
        assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[i], atol=1e-6)


def test_conditional_coupling_uses_context_and_inverts(float64):
    f = _case(lambda: build_flow(4, "affine", n_blocks=2, hidden_features=(8,), context_features=3))
    x, ctx = torch.randn(5, 4), torch.randn(5, 3)
    y, _ = f(x, ctx)
    assert torch.allclose(f.inverse(y, ctx), x, atol=1e-6)
    y_other, _ = f(x, ctx + 1.0)
    assert not torch.allclose(y, y_other)


@pytest.mark.parametrize("flow", FLOWS)
def test_switch_sets_constant_logdet_flag(flow):
    f = build_flow(4, flow, n_blocks=2, hidden_features=(8,))
    assert f.constant_logdet is (flow in USF_FLOWS) is is_usf(flow)


@pytest.mark.parametrize("flow", USF_FLOWS)
def test_usf_logdet_is_input_independent(flow, float64):
    f = _case(lambda: build_flow(6, flow, n_blocks=4, hidden_features=(16, 16)))
    x = torch.randn(200, 6) * torch.logspace(-2, 2, 200)[:, None]  # inputs of very different sizes
    _, logdet = f(x)
    assert torch.allclose(logdet, logdet[0].expand_as(logdet), atol=1e-10)
    assert abs(logdet[0].item()) > 1e-3  # kappa is learned, not forced to 0


def test_nonusf_logdet_varies_with_input(float64):
    f = _case(lambda: build_flow(6, "affine", n_blocks=4, hidden_features=(16, 16)))
    _, logdet = f(torch.randn(200, 6))
    assert logdet.std().item() > 1e-2


def test_switch_changes_only_the_couplings():
    def kinds(flow):
        return [type(m).__name__ for m in build_flow(4, flow, n_blocks=3, hidden_features=(8,)).modules()]

    usf, gin, affine = kinds("usf"), kinds("usf-gin"), kinds("affine")
    assert len(usf) == len(gin) == len(affine)
    assert {(a, b) for a, b in zip(usf, affine) if a != b} == {("AdditiveCoupling", "AffineCoupling")}
    assert {(a, b) for a, b in zip(gin, affine) if a != b} == {("GINCoupling", "AffineCoupling")}


def test_gin_coupling_is_the_affine_one_with_centred_log_scales(float64):
    torch.manual_seed(0)
    affine = _perturb(AffineCoupling(6, mlp((8,)), clamp=1.9)).double()
    gin = GINCoupling(6, mlp((8,)), clamp=1.9).double()
    gin.load_state_dict(affine.state_dict())
    x = torch.randn(50, 6)
    (ya, ld_affine), (yg, ld_gin) = affine(x), gin(x)
    a, b = x[:, :3], x[:, 3:]
    log_scale, shift = affine._log_scale_shift(affine._params(a, None))
    assert torch.allclose(ya[:, 3:], b * torch.exp(log_scale) + shift, atol=1e-12)
    expected = b * torch.exp(log_scale - log_scale.mean(1, keepdim=True)) + shift
    assert torch.allclose(yg[:, 3:], expected, atol=1e-12) and torch.equal(yg[:, :3], a)
    assert torch.equal(ld_gin, torch.zeros(50)) and ld_affine.std() > 1e-2
    # it does rescale each feature depending on the input (an additive coupling cannot)
    jac = torch.autograd.functional.jacobian(lambda v: gin(v[None])[0][0], x[0])
    assert (torch.diagonal(jac)[3:] - 1).abs().max() > 1e-2


def test_couplings_start_as_identity():
    f = build_flow(4, "affine", n_blocks=2, hidden_features=(8,))
    coupling = f.layers[0].inner
    x = torch.randn(10, 4)
    y, logdet = coupling(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(10))


def test_lu_layers_start_as_distinct_permutations():
    torch.manual_seed(0)
    a, b = LULinear(16), LULinear(16)
    for layer in (a, b):
        w = layer.weight()
        assert torch.equal(w.abs().sum(0), torch.ones(16)) and torch.equal(w.abs().sum(1), torch.ones(16))
        assert torch.equal(w, w.abs()) and layer.logabsdet().item() == 0.0
    assert not torch.equal(a.weight(), b.weight())


def test_lu_layer_stays_well_conditioned_under_adam_sized_steps():
    # Adam moves every factor entry by about the learning rate per step; from a rotation's
    # LU factors 30 such steps (1e-3, random signs) take cond(W) at 256 channels to 5.4,
    # and on to 1e3 and beyond in real training; from the permutation start it stays near 1
    torch.manual_seed(0)
    layer = LULinear(256)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(30):
            for p in layer.parameters():
                p.add_(1e-3 * torch.sign(torch.randn(p.shape, generator=g)))
    assert torch.linalg.cond(layer.weight().double()).item() < 2.0


def test_masks_alternate_between_blocks():
    f = build_flow(4, "usf", n_blocks=4, hidden_features=(8,))
    swaps = [block.inner.swap for block in f.layers[:4]]
    assert swaps == [False, True, False, True]


def test_actnorm_initialises_from_data_then_stays_fixed():
    layer = ActNorm(3)
    layer.train()
    x = torch.randn(500, 3) * torch.tensor([2.0, 0.5, 4.0]) + torch.tensor([1.0, -3.0, 0.0])
    y, _ = layer(x)
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(0), torch.ones(3), atol=1e-3)
    _, ld1 = layer(torch.randn(4, 3))
    _, ld2 = layer(100 * torch.randn(4, 3))
    assert torch.equal(ld1, ld2)


def test_actnorm_floors_the_scale_of_a_channel_constant_in_its_first_batch():
    # A ReLU feature that is off in the first batch used to get scale 1/eps = 1e6.
    torch.manual_seed(0)
    layer = ActNorm(4)
    layer.train()
    first = torch.randn(256, 4)
    first[:, 0] = 0.0
    layer(first)
    typical = first.std(0).mean()
    assert float(layer.log_scale.detach()[0]) <= float(-torch.log(0.1 * typical)) + 1e-4
    assert torch.allclose(layer.log_scale[1:], -torch.log(first[:, 1:].std(0)), atol=1e-4)
    later, _ = layer(torch.randn(256, 4))
    assert later.abs().max() < 100


def test_flow_with_actnorm_trains_when_a_channel_wakes_up_after_the_first_batch():
    torch.manual_seed(0)
    f = build_flow(6, "usf", n_blocks=2, hidden_features=(16,), actnorm=True)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3)
    losses = []
    for step in range(20):
        x = torch.randn(64, 6)
        if step == 0:
            x[:, 0] = 0.0
        z, logdet = f(x)
        loss = (0.5 * z.pow(2).sum(1) - logdet).mean() / 6
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # a 10x-scaled channel costs a large but finite loss; with a 1/eps scale it was ~1e22 here
    assert max(losses[1:]) < 1e4, losses


def test_sequential_rejects_non_bijections():
    with pytest.raises(TypeError, match="Bijection"):
        Sequential([torch.nn.Linear(2, 2)])


def test_build_flow_rejects_unknown_switch():
    with pytest.raises(ValueError, match="flow must be one of"):
        build_flow(3, "nice")


def test_depth_to_space_moves_channels_into_space():
    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    y, logdet = DepthToSpace(2)(x)
    assert y.shape == (1, 2, 2, 2) and torch.equal(logdet, torch.zeros(1))
    assert torch.equal(y[0, 0].flatten(), torch.arange(4.0))


def test_depth_to_space_rejects_channels_not_divisible():
    with pytest.raises(ValueError, match="needs"):
        DepthToSpace(2)(torch.randn(1, 6, 2, 2))


@pytest.mark.parametrize("flow", FLOWS)
def test_actnorm_blocks_and_alternating_subnets_change_only_the_couplings(flow):
    f = build_flow(4, flow, n_blocks=4, subnet=[conv(4, 3), conv(4, 1)], actnorm=True)
    kernels = [block.layers[1].inner.conditioner[0].kernel_size for block in f.layers[:4]]
    assert kernels == [(3, 3), (1, 1), (3, 3), (1, 1)]
    assert all(isinstance(block.layers[0], ActNorm) for block in f.layers[:4])
    assert f.constant_logdet is is_usf(flow)


@pytest.mark.parametrize("name", sorted(MAP_CASES) + sorted(VECTOR_CASES))
def test_derivatives_along_a_direction_match_autodiff(name, float64):
    """``forward_jvp`` / ``inverse_jvp`` (by hand for the layers usfad builds flows from)
    give the map and its Jacobian times a tangent, as PyTorch's forward-mode autodiff does."""
    f, x = _case_and_input(name)
    y = f(x)[0]
    dx, dy = torch.randn_like(x), torch.randn_like(y)
    with torch.no_grad():
        for got, want in (
            (f.forward_jvp(x, dx), autodiff_jvp(lambda v: f(v)[0], x, dx)),
            (f.inverse_jvp(y, dy), autodiff_jvp(f.inverse, y, dy)),
        ):
            assert torch.allclose(got[0], want[0], atol=1e-12) and torch.allclose(got[1], want[1], atol=1e-10)
    assert not torch.allclose(f.inverse_jvp(y, dy)[1], torch.zeros_like(x))


def test_derivatives_along_a_direction_hold_the_context_fixed(float64):
    f = _case(lambda: build_flow(4, "usf", n_blocks=2, hidden_features=(8,), context_features=3))
    x, dx, ctx = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    y = f(x, ctx)[0]
    got = f.inverse_jvp(y, dx, ctx)
    want = autodiff_jvp(lambda v: f.inverse(v, ctx), y, dx)
    assert torch.allclose(got[0], want[0], atol=1e-12) and torch.allclose(got[1], want[1], atol=1e-10)


def test_frozen_lu_layers_and_leaky_relu_conditioners_differentiate_by_hand(float64):
    from usfad.export import inference_copy

    f = inference_copy(_case(lambda: build_flow(5, "usf", n_blocks=2, hidden_features=(8,))))
    assert any(isinstance(m, FixedLinear) for m in f.modules())
    g = _case(lambda: AdditiveCoupling(5, mlp((8,), activation=torch.nn.LeakyReLU)))
    for flow in (f, g):
        y, dy = torch.randn(4, 5), torch.randn(4, 5)
        got, want = flow.inverse_jvp(y, dy), autodiff_jvp(flow.inverse, y, dy)
        assert torch.allclose(got[1], want[1], atol=1e-10)


@pytest.mark.parametrize("flow", FLOWS)
def test_the_flows_usfad_builds_differentiate_without_forward_mode_autodiff(flow, float64, monkeypatch):
    import usfad.flows.base
    import usfad.flows.subnets
    from usfad.export import inference_copy

    def refuse(*args):
        raise AssertionError("forward-mode autodiff was used")

    for module in (usfad.flows.base, usfad.flows.subnets):
        monkeypatch.setattr(module, "autodiff_jvp", refuse)
    vector = build_flow(5, flow, n_blocks=2, hidden_features=(8,))
    maps = build_flow(2, flow, n_blocks=2, subnet=[conv(4, 3), conv(4, 1)], actnorm=True)
    for f, x in (
        (vector, torch.randn(4, 5)),
        (inference_copy(vector), torch.randn(4, 5)),
        (maps, torch.randn(2, 2, 3, 3)),
    ):
        f = _perturb(f.double().eval())
        f.forward_jvp(x, torch.randn_like(x))
        f.inverse_jvp(x, torch.randn_like(x))
