import json

import pytest
import torch

from swin_edge.errors import SwinEdgeError
from swin_edge.model import (
    SwinTransformer,
    convert_state_dict,
    create_model,
    detect_format,
    load_into,
    variant_config,
)
from swin_edge.model.checkpoint import read_state_dict

from .conftest import FIXTURES

CASES = [
    ("timm", "timm_logits"),
    ("microsoft", "timm_logits"),
    ("torchvision", "torchvision_logits"),
]


@pytest.mark.parametrize("fmt,logits", CASES)
def test_numerically_equal_to_upstream(reference, small_cfg, fmt, logits, tmp_path):
    path = tmp_path / f"{fmt}.pth"
    torch.save(reference[f"{fmt}_state"], path)
    state = read_state_dict(path)
    assert detect_format(state) == fmt
    model = SwinTransformer(small_cfg).eval()
    load_into(model, convert_state_dict(state))
    with torch.no_grad():
        out = model(reference["input"])
    assert out.abs().max() > 0.1  # logits are not trivially small
    assert (out - reference[logits]).abs().max().item() <= 1e-5


def test_features_only_loads_classifier_checkpoint(reference, small_cfg):
    model = SwinTransformer(small_cfg, features_only=True).eval()
    load_into(model, convert_state_dict(reference["timm_state"]))
    full = SwinTransformer(small_cfg).eval()
    load_into(full, convert_state_dict(reference["timm_state"]))
    with torch.no_grad():
        last = model(reference["input"])[-1].permute(0, 2, 3, 1)
        assert torch.allclose(
            full.head(full.norm(last.reshape(-1, last.shape[-1]))),
            reference["timm_logits"],
            atol=1e-5,
        )


def test_feature_maps_equal_timm(reference, small_cfg):
    """Every stage's map is row-major NCHW although tokens flow in window order inside."""
    model = SwinTransformer(small_cfg, features_only=True).eval()
    load_into(model, convert_state_dict(reference["timm_state"]))
    with torch.no_grad():
        feats = model(reference["input"])
    assert len(feats) == len(reference["timm_features"]) == 3
    for ours, theirs in zip(feats, reference["timm_features"], strict=True):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "key,variant",
    [
        ("timm/swin_tiny_patch4_window7_224", "swin_tiny"),
        ("timm/swin_base_patch4_window12_384", "swin_base_patch4_window12_384"),
        ("torchvision/swin_t", "swin_tiny"),
        ("torchvision/swin_s", "swin_small"),
        ("torchvision/swin_b", "swin_base"),
    ],
)
def test_full_size_upstream_keys_map_exactly(key, variant):
    shapes = json.loads((FIXTURES / "upstream_keys.json").read_text())[key]
    state = {k: torch.empty(s) for k, s in shapes.items()}
    mapped = convert_state_dict(state)
    own = SwinTransformer(variant_config(variant)).state_dict()
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {
        k: tuple(v.shape) for k, v in own.items()
    }


def test_mismatch_lists_missing_and_unexpected_keys(reference, small_cfg):
    state = convert_state_dict(reference["timm_state"])
    state.pop("norm.weight")
    state["bogus.weight"] = torch.zeros(1)
    with pytest.raises(SwinEdgeError) as e:
        load_into(SwinTransformer(small_cfg), state, source="x.pth")
    msg = str(e.value)
    assert "missing keys: norm.weight" in msg and "unexpected keys: bogus.weight" in msg
    assert "\n" not in msg


def test_wrong_variant_reports_shape_mismatch(reference, tmp_path):
    path = tmp_path / "small.pth"
    torch.save(reference["timm_state"], path)
    with pytest.raises(SwinEdgeError, match="does not match the model.*--model"):
        create_model("swin_tiny", checkpoint=str(path))


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_unreadable_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(SwinEdgeError, match="bad.pth' could not be read"):
        read_state_dict(path)


def test_non_swin_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(SwinEdgeError, match="not a Swin Transformer"):
        create_model("swin_tiny", checkpoint=str(path))


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(
    reference, small_cfg, tmp_path, value, kind
):
    state = dict(reference["timm_state"])
    key = "layers.1.blocks.0.mlp.fc1.weight"
    state[key] = state[key].clone()
    state[key][0, 0] = value
    path = tmp_path / "diverged.pth"
    torch.save({"model": state}, path)
    with pytest.raises(SwinEdgeError, match=f"diverged.pth' has {kind} in '{key}'; .*finite"):
        create_model(small_cfg, checkpoint=str(path))


def test_headless_checkpoint_loads_as_pooled_feature_model(reference, small_cfg, tmp_path):
    state = {k: v for k, v in reference["timm_state"].items() if not k.startswith("head.")}
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    model = create_model(small_cfg, checkpoint=str(path))
    full = SwinTransformer(small_cfg).eval()
    load_into(full, convert_state_dict(reference["timm_state"]))
    x = reference["input"]
    with torch.no_grad():
        pooled = model(x)
        expected = full.forward_features(x).reshape(len(x), -1, full.num_features).mean(1)
    assert model.cfg.num_classes == 0 and pooled.shape == (len(x), full.num_features)
    assert torch.allclose(pooled, expected, atol=1e-6)
    assert len(create_model(small_cfg, checkpoint=str(path), features_only=True)(x)) == 3
    with pytest.raises(SwinEdgeError, match="backbone.pth' has no classifier .*--features-only"):
        create_model(small_cfg, checkpoint=str(path), num_classes=10)
    full_path = tmp_path / "full.pth"
    torch.save(reference["timm_state"], full_path)  # --num-classes 0 drops a classifier
    dropped = create_model(small_cfg, checkpoint=str(full_path), num_classes=0)
    with torch.no_grad():
        assert torch.equal(dropped(x), pooled)


def test_feature_backbone_without_final_norm_points_at_features_only(reference, small_cfg):
    state = convert_state_dict(reference["timm_state"])
    state = {k: v for k, v in state.items() if not k.startswith(("norm.", "head."))}
    with pytest.raises(SwinEdgeError, match="missing keys: head.*pass --features-only"):
        load_into(SwinTransformer(small_cfg), state, source="f.pth")
    load_into(SwinTransformer(small_cfg, features_only=True), state, source="f.pth")
