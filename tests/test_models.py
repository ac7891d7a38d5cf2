"""Model registry records, encoder builders and their feature outputs."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from core.errors import SoftConError
from core.geo.stats import S1_MEAN, S2C_MEAN
from core.models.checkpoint import save_safetensors
from core.models.encoders import ARCHS, build_encoder, create_encoder, is_empty
from core.models.record import record_metadata
from core.models.registry import (ARCHITECTURES, DEFAULT_MODEL, HF_REPO, REGISTRY, get_record, record_from_checkpoint,
                                  register)

PUBLISHED = {
    "B13_rn50_softcon": ("resnet50", 13, 2048, "torchvision"),
    "B13_vits14_softcon": ("vit_small_patch14_dinov2", 13, 384, "dinov2"),
    "B13_vitb14_softcon": ("vit_base_patch14_dinov2", 13, 768, "dinov2"),
    "B2_rn50_softcon": ("resnet50", 2, 2048, "torchvision"),
    "B2_vits14_softcon": ("vit_small_patch14_dinov2", 2, 384, "dinov2"),
    "B2_vitb14_softcon": ("vit_base_patch14_dinov2", 2, 768, "dinov2"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_records(name):
    arch, chans, dim, fmt = PUBLISHED[name]
    r = get_record(name)
    assert (r.arch, r.in_chans, r.embed_dim, r.checkpoint_format, r.input_size) == (arch, chans, dim, fmt, 224)
    assert r.filename == f"{name}.pth" and r.hf_repo == HF_REPO
    assert r.url == f"https://huggingface.co/wangyi111/softcon/resolve/main/{name}.pth"
    if chans == 13:
        assert r.mean[0] == S2C_MEAN[0] and r.sar_quantiles is None and r.bands[8] == "B8A"
    else:
        assert r.bands == ("VV", "VH") and r.mean[0] == S1_MEAN[0] and r.sar_quantiles == (0.01, 0.99)


def test_shipped_model_records_are_untouched():
    assert DEFAULT_MODEL == "galileo_nano_s2"
    r = get_record(DEFAULT_MODEL)
    got = (r.arch, r.input_size, r.in_chans, r.embed_dim, r.checkpoint_format, r.clip)
    assert got == ("galileo_nano", 64, 10, 128, "galileo", False)
    assert r.local_path.endswith("core/weights/galileo_nano_s2.safetensors")
    r = get_record("softcon_tiny_s2")
    got = (r.arch, r.input_size, r.in_chans, r.embed_dim, r.checkpoint_format, r.clip)
    assert got == ("vit_tiny_patch8_64", 64, 13, 192, "safetensors", True)
    assert r.local_path.endswith("core/weights/softcon_tiny_s2.safetensors")


def test_registry_rejects_inconsistent_records():
    r = get_record("B2_rn50_softcon")
    with pytest.raises(ValueError, match="unknown arch"):
        register(dataclasses.replace(r, name="x", arch="vit_huge"))
    with pytest.raises(ValueError, match="2 bands but 1 means"):
        register(dataclasses.replace(r, name="x", mean=(0.0,)))
    assert "x" not in REGISTRY
    with pytest.raises(SoftConError, match="Known models: B13_rn50_softcon"):
        get_record("B13_vitl14_softcon")


@pytest.mark.parametrize("arch, chans, size, dim, grid", [
    ("vit_tiny_patch8_64", 13, 64, 192, 8),
    ("resnet50", 13, 64, 2048, 2),
])
def test_feature_outputs(arch, chans, size, dim, grid):
    enc = build_encoder(arch, chans, size).eval()
    assert enc.embed_dim == dim
    x = torch.rand(2, chans, size, size)
    with torch.no_grad():
        pooled, dense = enc(x), enc.forward_dense(x)
        probe = enc.forward_linear_probe(x)
    assert pooled.shape == (2, dim) and dense.shape == (2, dim, grid, grid)
    if enc.kind == "vit":
        assert probe.shape == (2, 5 * dim)
        # probe = [CLS of blocks -4..-1 (normed), mean patch token]; its 4th CLS is the pooled output
        assert torch.allclose(probe[:, 3 * dim:4 * dim], pooled, atol=1e-5)
        assert torch.allclose(probe[:, 4 * dim:], dense.mean(dim=(2, 3)), atol=1e-5)
        with torch.no_grad():
            assert enc.forward_linear_probe(x, avgpool=False).shape == (2, 4 * dim)
            keep = torch.tensor([[0, 5, 9], [1, 2, 3]])
            assert enc.tokens(x, keep).shape == (2, 4, dim)
    else:
        assert torch.allclose(pooled, dense.mean(dim=(2, 3))) and torch.equal(probe, pooled)


def test_vit_dense_on_larger_windows():
    enc = build_encoder("vit_tiny_patch8_64", 13, 64).eval()
    with torch.no_grad():
        assert enc.forward_dense(torch.rand(1, 13, 96, 128)).shape == (1, 192, 12, 16)


def test_the_torch_free_registry_agrees_with_the_builders():
    """Architectures, parameter counts (the plugin's download sizes) and Galileo's bands, declared without torch."""
    from core.geo.bands import S2_SURFACE
    from core.models.galileo import BANDS

    assert set(ARCHS) == set(ARCHITECTURES) and BANDS == S2_SURFACE
    for r in REGISTRY.values():
        encoder = build_encoder(r.arch, r.in_chans, r.input_size, empty=True)
        assert r.parameters == sum(p.numel() for p in encoder.parameters()) and r.title, r.name


def test_empty_build_and_default_model_offline(tmp_path, monkeypatch):
    assert is_empty(build_encoder("vit_base_patch14_dinov2", 13, 224, empty=True))
    assert set(ARCHS) >= {"resnet50", "vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_tiny_patch8_64"}
    monkeypatch.setenv("SOFTCON_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in (DEFAULT_MODEL, "softcon_tiny_s2"):  # shipped in the repository: load offline, sha256 checked
        enc, rec = create_encoder(name)
        assert not is_empty(enc) and not enc.training and rec.name == name and rec.sha256
        rand, _ = create_encoder(name, pretrained=False)
        assert not torch.equal(rand.model.blocks[0].norm1.weight, enc.model.blocks[0].norm1.weight)


def test_user_checkpoint_is_a_model(tmp_path):
    """train.pretrain writes safetensors with record metadata; the file alone is enough."""
    base = get_record("softcon_tiny_s2")
    enc = build_encoder(base.arch, base.in_chans, base.input_size)
    mine = dataclasses.replace(base, name="my_model", description="trained on my tiles")
    path = save_safetensors(enc, tmp_path / "my_model.safetensors", record_metadata(mine, epochs=3))
    rec = record_from_checkpoint(path)
    assert (rec.name, rec.arch, rec.bands, rec.mean, rec.input_size) == ("my_model", base.arch, base.bands, base.mean, 64)
    assert rec.local_path == str(path) and rec.checkpoint_format == "safetensors"
    loaded, rec2 = create_encoder(str(path))
    assert rec2 == rec
    x = torch.rand(1, 13, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc.eval()(x))
    bare = save_safetensors(enc, tmp_path / "bare.safetensors", {})
    with pytest.raises(SoftConError, match="carries no model metadata"):
        create_encoder(str(bare))
    # a bare file still loads when the model is named
    named, _ = create_encoder("softcon_tiny_s2", checkpoint=bare)
    with torch.no_grad():
        assert torch.equal(named(x), enc(x))


def test_pretrain_style_metadata(tmp_path):
    """Comma-separated bands, no embed_dim, a model name that is not registered: still a usable record."""
    enc = build_encoder("vit_tiny_patch8_64", 13, 32)
    meta = {"model": "vit_tiny_patch8_64", "arch": "vit_tiny_patch8_64", "bands": "B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,B10,B11,B12",
            "input_size": "32", "mean": list(S2C_MEAN), "std": [1.0] * 13}
    path = save_safetensors(enc, tmp_path / "encoder.safetensors", meta)
    rec = record_from_checkpoint(path)
    assert rec.name == "vit_tiny_patch8_64" and rec.embed_dim == 192 and rec.input_size == 32 and rec.bands[8] == "B8A"
    loaded, _ = create_encoder(str(path))
    assert loaded(torch.rand(1, 13, 32, 32)).shape == (1, 192)
