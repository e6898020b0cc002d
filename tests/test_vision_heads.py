"""FastFlow, CFlow and U-Flow heads: the USF switch, shapes, and the U-Flow bookkeeping."""

import pytest
import torch

from usfad.flows import FLOWS, USF_FLOWS
from usfad.vision.heads import HEADS, CFlowHead, UFlowHead, build_head, positional_encoding


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one torch thread is faster, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CHANNELS, REDUCTIONS = [8, 12], [4, 8]


def _features(seed, batch=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 8, 8, 8, generator=g) * 2 + 1, torch.randn(batch, 12, 4, 4, generator=g)]


def _trained_looking_head(model, flow, seed=0):
    """A head whose ActNorms are initialised and whose weights are moved off the identity."""
    torch.manual_seed(seed)
    head = build_head(model, CHANNELS, REDUCTIONS, flow, n_blocks=2)
    head.train()
    head.loss(_features(99, batch=6))  # data-dependent ActNorm initialisation
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return head.eval()


@pytest.mark.parametrize("flow", USF_FLOWS)
@pytest.mark.parametrize("model", HEADS)
def test_usf_head_logdet_is_input_independent(model, flow, float64):
    head = _trained_looking_head(model, flow)
    assert head.constant_logdet is True
    ld1, ld2 = head.logdet(_features(1)), head.logdet(_features(2))
    assert torch.allclose(ld1, ld1[0].expand_as(ld1), atol=1e-9)
    assert torch.allclose(ld1, ld2, atol=1e-9)
    assert abs(ld1[0].item()) > 1e-3  # a learned volume change, not zero by construction


@pytest.mark.parametrize("model", HEADS)
def test_affine_head_logdet_varies_with_input(model, float64):
    head = _trained_looking_head(model, "affine")
    assert head.constant_logdet is False
    ld1, ld2 = head.logdet(_features(1)), head.logdet(_features(2))
    assert (ld1 - ld2).abs().max().item() > 1e-3


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("model", ["fastflow", "uflow"])
def test_density_maps_are_the_per_position_nll(model, flow, float64):
    """They add up to the training loss; a USF's differ from its anomaly maps by one constant
    per level, an affine head's do not (its latent distance is not its density)."""
    head = _trained_looking_head(model, flow)
    x = _features(1)
    density, latent = head.density_maps(x), head.anomaly_maps(x)
    zs, _ = head.latents(x)
    assert [m.shape for m in density] == [z.shape[:1] + z.shape[2:] for z in zs]
    dims = sum(z[0].numel() for z in zs)
    total = sum(z.shape[1] * m.flatten(1).sum(1) for z, m in zip(zs, density))
    assert torch.allclose(total / dims, head.loss(x), atol=1e-9)
    gaps = [d - m for d, m in zip(density, latent)]
    constant = all(torch.allclose(g, g.flatten()[0].expand_as(g), atol=1e-9) for g in gaps)
    assert constant is (flow in USF_FLOWS)


def test_cflow_density_maps_are_its_anomaly_maps():
    x = _features(1)
    cflow = _trained_looking_head("cflow", "affine")
    assert all(torch.equal(a, b) for a, b in zip(cflow.density_maps(x), cflow.anomaly_maps(x)))


@pytest.mark.parametrize("model", HEADS)
def test_switch_changes_only_the_couplings_in_every_head(model):
    def kinds(flow):
        torch.manual_seed(0)
        return [type(m).__name__ for m in build_head(model, CHANNELS, REDUCTIONS, flow, n_blocks=2).modules()]

    usf, gin, affine = kinds("usf"), kinds("usf-gin"), kinds("affine")
    assert len(usf) == len(gin) == len(affine)
    assert {(a, b) for a, b in zip(usf, affine) if a != b} == {("AdditiveCoupling", "AffineCoupling")}
    assert {(a, b) for a, b in zip(gin, affine) if a != b} == {("GINCoupling", "AffineCoupling")}
    assert "ActNorm" in usf and "LULinear" in usf


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("model", HEADS)
def test_head_gives_one_finite_map_per_level_and_a_finite_loss(model, flow):
    head = _trained_looking_head(model, flow)
    features = _features(3)
    maps = head.anomaly_maps(features)
    assert [tuple(m.shape) for m in maps] == [(3, 8, 8), (3, 4, 4)]
    assert all(torch.isfinite(m).all() for m in maps)
    loss = head.loss(features)
    assert loss.shape == (3,) and torch.isfinite(loss).all()


def test_heads_reject_features_with_other_channels():
    head = build_head("fastflow", CHANNELS, flow="usf", n_blocks=1)
    with pytest.raises(ValueError, match=r"channels \[8, 12\]"):
        head.loss([torch.randn(2, 8, 8, 8), torch.randn(2, 5, 4, 4)])


def test_uflow_latents_keep_every_dimension_and_invert(float64):
    head = _trained_looking_head("uflow", "usf")
    features = _features(4)
    zs, _ = head.latents(features)
    assert sum(z[0].numel() for z in zs) == sum(f[0].numel() for f in features)
    # undo the coarse scale by hand: its latent and the part sent up reconstruct its features
    coarse_flow, up = head.flows[0], head.ups[0]
    y = coarse_flow(features[1])[0]
    keep = y.shape[1] - head.up_channels[0]
    sent = up.inverse(up(y[:, keep:])[0])
    assert torch.allclose(coarse_flow.inverse(torch.cat((zs[1], sent), 1)), features[1], atol=1e-8)


def test_uflow_sends_part_of_each_coarse_scale_up_as_whole_pixel_groups():
    head = UFlowHead([8, 12], [4, 8], "usf", n_blocks=1)
    assert head.order == [1, 0]  # coarsest (stride 8) first
    assert head.up_channels == [4, 0]  # 12 // 2 = 6, rounded down to a multiple of 2^2
    assert head.flows[1].layers[0].layers[0].bias.shape == (8 + 1,)  # finer scale sees its 8 + 4 / 4 channels


def test_uflow_rejects_strides_that_do_not_nest():
    with pytest.raises(ValueError, match="multiple of the next finer"):
        UFlowHead([8, 12], [4, 6])
    with pytest.raises(ValueError, match="reductions"):
        build_head("uflow", CHANNELS)


def test_uflow_rejects_maps_of_mismatched_size():
    head = UFlowHead(CHANNELS, REDUCTIONS, n_blocks=1)
    with pytest.raises(ValueError, match="divisible by 8"):
        head.loss([torch.randn(2, 8, 9, 9), torch.randn(2, 12, 4, 4)])


def test_cflow_trains_on_random_fibres_and_scores_every_position():
    torch.manual_seed(0)
    head = CFlowHead(CHANNELS, "affine", n_blocks=1, fibres_per_image=5)
    features = _features(5)
    head.train()
    head.loss(features)
    a, b = head.loss(features), head.loss(features)
    assert not torch.equal(a, b)  # different random fibres
    head.eval()
    assert torch.equal(head.loss(features), head.loss(features))
    maps = head.anomaly_maps(features)
    assert torch.allclose(head.loss(features), torch.stack([m.flatten(1).mean(1) for m in maps]).mean(0), atol=1e-5)


def test_positional_encoding_separates_positions():
    pe = positional_encoding(16, 5, 7)
    assert pe.shape == (16, 5, 7)
    codes = pe.flatten(1).T
    assert torch.cdist(codes, codes).add(torch.eye(35) * 10).min() > 1e-3
    with pytest.raises(ValueError, match="divisible by 4"):
        positional_encoding(6, 2, 2)


def test_build_head_rejects_unknown_model_and_flow():
    with pytest.raises(ValueError, match="model must be one of"):
        build_head("padim", CHANNELS)
    with pytest.raises(ValueError, match="flow must be one of"):
        build_head("fastflow", CHANNELS, flow="nice")


def test_conditioner_kernel_sizes_alternate_between_blocks_and_must_be_odd():
    def kernels(head):
        return [m.kernel_size[0] for m in head.modules() if isinstance(m, torch.nn.Conv2d)]

    default = build_head("fastflow", [4], n_blocks=2)
    only3 = build_head("fastflow", [4], n_blocks=2, kernel_sizes=(3,))
    assert kernels(default) == [3, 3, 1, 1] and kernels(only3) == [3, 3, 3, 3]  # two convs per conditioner
    assert set(kernels(build_head("uflow", [4, 8], [2, 4], n_blocks=2, kernel_sizes=(5,)))) == {5}
    with pytest.raises(ValueError, match="odd positive"):
        build_head("fastflow", [4], kernel_sizes=(2,))
