import pytest
import torch

from swin_edge.errors import SwinEdgeError
from swin_edge.model import SwinConfig, SwinTransformer, create_model, variant_config
from swin_edge.model.swin import (
    PatchMerging,
    gather_tokens,
    shifted_window_mask,
    shifted_window_order,
    window_order,
    window_partition,
)


def test_window_order_is_window_partition_order():
    x = torch.randn(2, 8, 8, 5)
    w = window_partition(x, 4, 8, 8, 5)
    assert w.shape == (8 * 16, 5)
    assert torch.equal(gather_tokens(x.reshape(-1, 5), window_order(8, 4), 5), w)


def test_shift_mask_blocks_cross_region_attention():
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window is one region
    assert (mask[-1] == -100).any() and (torch.diagonal(mask[-1]) == 0).all()


@pytest.mark.parametrize(
    "name,params_m",
    [("swin_tiny", 28.3), ("swin_small", 49.6), ("swin_base", 87.8), ("swin_large", 196.5)],
)
def test_variant_parameter_counts_match_published(name, params_m):
    cfg = variant_config(name)
    model = SwinTransformer(cfg)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - params_m) < 0.1


def test_buffers_are_static_and_not_in_state_dict():
    model = create_model("swin_tiny")
    keys = model.state_dict().keys()
    assert not any("relative_position_index" in k or "attn_mask" in k for k in keys)
    blocks = [b for stage in model.layers for b in stage.blocks]
    assert [b.shift_size for b in blocks[:2]] == [0, 3]
    assert blocks[-1].shift_size == 0 and blocks[-1].window_size == 7  # 7x7 stage: no shift
    assert blocks[1].attn_mask.shape == (64, 49, 49)


def test_features_only_returns_four_nchw_maps():
    model = create_model("swin_tiny", features_only=True, img_size=224)
    feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [
        (1, 96, 56, 56),
        (1, 192, 28, 28),
        (1, 384, 14, 14),
        (1, 768, 7, 7),
    ]


def test_window12_at_384_and_custom_resolution():
    cfg = variant_config("swin_base_patch4_window12_384")
    assert cfg.stage_resolutions() == [96, 48, 24, 12] and cfg.preprocess.crop_pct == 1.0
    small = SwinConfig(
        img_size=64,
        patch_size=2,
        embed_dim=8,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=3,
    )
    assert SwinTransformer(small).eval()(torch.randn(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("kw", [dict(img_size=200), dict(img_size=224, window_size=12)])
def test_bad_resolution_is_one_line_error(kw):
    with pytest.raises(SwinEdgeError, match="multiple of") as e:
        variant_config("swin_tiny", **kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kw,hint",
    [
        (dict(img_size=320), ", or --window-size 5 or 10"),  # stages 80, 40, 20, 10
        (dict(img_size=224, window_size=12), ", or --window-size 7 or 14"),  # 56, 28, 14, 7
        (dict(img_size=200), "e.g. --img-size 224"),  # not a multiple of 32: no window fits
    ],
)
def test_resolution_error_names_windows_that_fit(kw, hint):
    with pytest.raises(SwinEdgeError) as e:
        variant_config("swin_tiny", **kw)
    assert str(e.value).endswith(hint)
    if "window-size" in hint:
        for w in hint.split("--window-size ")[1].split(" or "):
            variant_config("swin_tiny", **dict(kw, window_size=int(w)))  # they do fit


def test_unknown_variant():
    with pytest.raises(SwinEdgeError, match="unknown model 'swin_huge'.*swin_tiny"):
        variant_config("swin_huge")


@pytest.mark.parametrize("res, ws, shift", [(8, 4, 2), (12, 4, 2), (14, 7, 3)])
def test_shifted_window_order_is_roll_then_partition(res, ws, shift):
    x = torch.randn(2, res, res, 3)
    ref = window_partition(torch.roll(x, (-shift, -shift), (1, 2)), ws, res, res, 3)
    stream = window_partition(x, ws, res, res, 3)  # tokens in window order
    got = gather_tokens(stream, shifted_window_order(res, ws, shift), 3)
    assert torch.equal(got, ref)
    back = gather_tokens(got, torch.argsort(shifted_window_order(res, ws, shift)), 3)
    assert torch.equal(back, stream)


def test_patch_merging_gather_matches_the_reference_layout():
    res, c = 8, 3
    x = torch.randn(2, res, res, c)
    ref = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    for ws_in, ws_out in ((4, 4), (4, 2), (8, 4)):
        merge = PatchMerging(c, res, ws_in, ws_out)
        got = gather_tokens(window_partition(x, ws_in, res, res, c), merge.index, c)
        expected = window_partition(ref, ws_out, res // 2, res // 2, 4 * c)
        assert torch.equal(got.reshape(-1, 4 * c), expected)
