"""Published SoftCon checkpoints load strictly and compute what DINOv2 / torchvision compute.

For each of the six published files a fake checkpoint is written with exactly the published key
names and shapes (random values), loaded through the registry record, and the timm encoder is
compared with a reference forward written here from the DINOv2 and torchvision definitions.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.models.adapt import adapt_input_conv, init_from_rgb, resample_pos_embed
from core.models.checkpoint import load_weights, read_state_dict, save_safetensors
from core.models.encoders import build_encoder
from core.errors import SoftConError
from core.models.cli import main as models_main
from core.models.manage import convert
from core.models.registry import get_record
from core.models.encoders import create_encoder

TOL = 1e-5
VIT = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12)}  # dim, depth, heads


# ------------------------------------------------------------------------------------------
# Fake published files
# ------------------------------------------------------------------------------------------
def dinov2_published(dim: int, depth: int, in_chans: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DINOv2 ViT-x/14 state dict as SoftCon publishes it (224 px, block_chunks=0, no registers)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.02, base=0.0):
        return base + scale * torch.randn(*shape, generator=g)

    sd = {
        "cls_token": rnd(1, 1, dim),
        "pos_embed": rnd(1, 257, dim),
        "mask_token": rnd(1, dim),
        "patch_embed.proj.weight": rnd(dim, in_chans, 14, 14, scale=1 / math.sqrt(in_chans * 196)),
        "patch_embed.proj.bias": rnd(dim),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": rnd(dim, scale=0.1, base=1.0), p + "norm1.bias": rnd(dim),
            p + "attn.qkv.weight": rnd(3 * dim, dim, scale=dim ** -0.5), p + "attn.qkv.bias": rnd(3 * dim),
            p + "attn.proj.weight": rnd(dim, dim, scale=dim ** -0.5), p + "attn.proj.bias": rnd(dim),
            p + "ls1.gamma": rnd(dim, scale=0.1, base=0.2),
            p + "norm2.weight": rnd(dim, scale=0.1, base=1.0), p + "norm2.bias": rnd(dim),
            p + "mlp.fc1.weight": rnd(4 * dim, dim, scale=dim ** -0.5), p + "mlp.fc1.bias": rnd(4 * dim),
            p + "mlp.fc2.weight": rnd(dim, 4 * dim, scale=(4 * dim) ** -0.5), p + "mlp.fc2.bias": rnd(dim),
            p + "ls2.gamma": rnd(dim, scale=0.1, base=0.2),
        })
    sd["norm.weight"] = rnd(dim, scale=0.1, base=1.0)
    sd["norm.bias"] = rnd(dim)
    return sd


def torchvision_rn50(in_chans: int, seed: int = 0) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """torchvision resnet50 with a C-band conv1 and fc = Identity (SoftCon README), random weights."""
    import torchvision

    with torch.device("meta"):  # names and shapes only; values are drawn below
        ref = torchvision.models.resnet50(weights=None)
        ref.conv1 = torch.nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    ref.fc = torch.nn.Identity()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in ref.state_dict().items():  # non-trivial BN statistics and affine terms, moderate scales
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith("running_mean"):
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("bn3.weight"):
            sd[k] = 0.2 + 0.05 * torch.randn(v.shape, generator=g)
        elif k.endswith("bias"):
            sd[k] = 0.05 * torch.randn(v.shape, generator=g)
        elif v.ndim == 1:  # BN weights
            sd[k] = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        else:  # conv: He-normal
            sd[k] = torch.randn(v.shape, generator=g) * math.sqrt(2.0 / v[0].numel())
    ref.load_state_dict(sd, assign=True)
    return ref.eval(), sd


# ------------------------------------------------------------------------------------------
# Reference DINOv2 forward in plain torch ops
# ------------------------------------------------------------------------------------------
def dinov2_reference(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """Token sequences after each block (not normed), DINOv2 ``DinoVisionTransformer`` at 224 px."""
    dim = sd["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)                                  # (B, 256, D)
    t = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), t], 1) + sd["pos_embed"]
    outs = []
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        b, n, _ = qkv.shape
        q, k, v = qkv.reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1), dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(b, n, dim)
        o = o @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        t = t + sd[p + "ls1.gamma"] * o
        h = F.layer_norm(t, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        h = h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
        t = t + sd[p + "ls2.gamma"] * h
        outs.append(t)
    return outs


def _norm(sd, t):
    return F.layer_norm(t, (t.shape[-1],), sd["norm.weight"], sd["norm.bias"], eps=1e-6)


def _maxdiff(name: str, what: str, a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a - b).abs().max().item()
    print(f"{name} {what}: max abs diff {d:.3e} (|ref| max {b.abs().max().item():.2f})")
    return d


# ------------------------------------------------------------------------------------------
# The six published files
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["B13_vits14_softcon", "B2_vits14_softcon", "B13_vitb14_softcon", "B2_vitb14_softcon"])
def test_published_vit_loads_strictly_and_matches_dinov2(name, tmp_path):
    record = get_record(name)
    dim, depth, heads = VIT[name.split("_")[1]]
    sd = dinov2_published(dim, depth, record.in_chans)
    assert record.filename == f"{name}.pth" and record.checkpoint_format == "dinov2"
    path = tmp_path / record.filename
    torch.save(sd, path)

    encoder = build_encoder(record.arch, record.in_chans, record.input_size, empty=True)
    notes = load_weights(encoder, path, record)
    assert any("mask_token" in n for n in notes)
    encoder.eval()
    batch = 1
    x = torch.rand(batch, record.in_chans, 224, 224, generator=torch.Generator().manual_seed(1))
    small = dim == 384  # ViT-B is slow on shared CPUs: its pooled output only, the rest on ViT-S
    with torch.no_grad():
        blocks = dinov2_reference(sd, x, heads)
        last = _norm(sd, blocks[-1])
        pooled = encoder(x)
        dense = encoder.forward_dense(x) if small else None
        probe = encoder.forward_linear_probe(x) if small else None
    # DINOv2 forward(): x_norm_clstoken
    assert pooled.shape == (batch, dim)
    assert _maxdiff(name, "pooled (normed CLS)", pooled, last[:, 0]) < TOL
    if small:
        # dense patch tokens on the 16x16 grid, row-major like the patch embedding
        ref_dense = last[:, 1:].transpose(1, 2).reshape(batch, dim, 16, 16)
        assert _maxdiff(name, "dense (B,D,16,16)", dense, ref_dense) < TOL
        # DINOv2 eval/linear.py create_linear_input(n=4, avgpool=True)
        normed = [_norm(sd, t) for t in blocks[-4:]]
        ref_probe = torch.cat([t[:, 0] for t in normed] + [normed[-1][:, 1:].mean(1)], dim=-1)
        assert probe.shape == (batch, 5 * dim)
        assert _maxdiff(name, "linear probe (4 CLS + mean patch)", probe, ref_probe) < TOL


@pytest.mark.parametrize("name", ["B13_rn50_softcon", "B2_rn50_softcon"])
def test_published_rn50_loads_strictly_and_matches_torchvision(name, tmp_path):
    record = get_record(name)
    ref, sd = torchvision_rn50(record.in_chans)
    assert "conv1.weight" in sd and sd["conv1.weight"].shape == (64, record.in_chans, 7, 7)
    assert not any(k.startswith("fc.") for k in sd)
    path = tmp_path / record.filename
    torch.save(sd, path)
    encoder, _ = create_encoder(name, pretrained=False, checkpoint=path)
    x = torch.rand(1, record.in_chans, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref(x)  # README: model_r50(img) with fc = Identity -> (B, 2048)
        got = encoder(x)
        dense = encoder.forward_dense(x[..., :64, :64])
    assert got.shape == (1, 2048) and dense.shape == (1, 2048, 2, 2)
    assert _maxdiff(name, "pooled (GAP)", got, want) < TOL


# ------------------------------------------------------------------------------------------
# Wrong files fail with a message that says what is wrong
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vits_b2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "B2_vits14_softcon.pth"
    torch.save(dinov2_published(384, 12, 2), path)
    return path


def test_other_modality_is_named(vits_b2_file):
    with pytest.raises(SoftConError) as err:
        create_encoder("B13_vits14_softcon", pretrained=False, checkpoint=vits_b2_file)
    msg = str(err.value)
    print(msg)
    assert "patch_embed.proj.weight (384, 2, 14, 14) vs (384, 13, 14, 14)" in msg
    assert "2-band Sentinel-1" in msg and "expects 13 bands" in msg


def test_rn50_file_in_vit_model_is_named(tmp_path):
    _, sd = torchvision_rn50(13)
    path = tmp_path / "rn.pth"
    torch.save(sd, path)
    with pytest.raises(SoftConError) as err:
        create_encoder("B13_vits14_softcon", pretrained=False, checkpoint=path)
    msg = str(err.value)
    assert "missing keys: cls_token" in msg and "unexpected keys: conv1.weight" in msg and "ResNet" in msg


def test_truncated_file(vits_b2_file, tmp_path):
    data = vits_b2_file.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SoftConError, match="truncated"):
        create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=cut)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(SoftConError, match="empty"):
        read_state_dict(empty)
    with pytest.raises(SoftConError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_wrong_keys_are_named(vits_b2_file, tmp_path):
    sd = torch.load(vits_b2_file, weights_only=True)
    sd["blocks.3.ls1.weight"] = sd.pop("blocks.3.ls1.gamma")
    path = tmp_path / "renamed.pth"
    torch.save(sd, path)
    with pytest.raises(SoftConError) as err:
        create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=path)
    assert "missing keys: blocks.3.ls1.gamma" in str(err.value)
    assert "unexpected keys: blocks.3.ls1.weight" in str(err.value)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "cfg": object()}, path)
    with pytest.raises(SoftConError, match="weights_only"):
        read_state_dict(path)


def test_wrappers_and_prefixes_are_unwrapped(vits_b2_file, tmp_path):
    sd = torch.load(vits_b2_file, weights_only=True)
    wrapped = {"teacher": {**{f"module.backbone.{k}": v for k, v in sd.items()},
                           "module.head.last_layer.weight": torch.zeros(3, 3)},
               "epoch": 100}
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped, path)
    notes: list[str] = []
    got = read_state_dict(path, notes)
    assert set(got) == set(sd)
    text = " | ".join(notes)
    assert "unwrapped {'teacher'" in text and "stripped prefix 'module.'" in text
    assert "stripped prefix 'backbone.'" in text and "head.last_layer.weight" in text
    # chunked DINOv2 blocks (block_chunks=4: blocks.{chunk}.{i}) are renamed explicitly
    chunked = {(f"blocks.{int(k.split('.')[1]) // 3}.{k[len('blocks.'):]}" if k.startswith("blocks.") else k): v
               for k, v in sd.items()}
    path2 = tmp_path / "chunked.pth"
    torch.save(chunked, path2)
    encoder, _ = create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=path2)
    assert torch.equal(encoder.model.blocks[7].ls2.gamma, sd["blocks.7.ls2.gamma"])


# ------------------------------------------------------------------------------------------
# Conversion to this project's safetensors
# ------------------------------------------------------------------------------------------
def test_convert_and_save_safetensors_roundtrip(vits_b2_file, tmp_path, capsys):
    out = tmp_path / "b2.safetensors"
    assert models_main(["convert", "B2_vits14_softcon", str(vits_b2_file), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    from core.models.record import read_safetensors_metadata

    meta = read_safetensors_metadata(out)
    assert meta["model"] == "B2_vits14_softcon" and meta["arch"] == "vit_small_patch14_dinov2"
    assert meta["bands"] == '["VV", "VH"]' and "mask_token" in meta["conversion"]
    a, _ = create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=vits_b2_file)
    b, rec = create_encoder(str(out))  # a user checkpoint is a model of its own
    assert rec.bands == ("VV", "VH") and rec.sar_quantiles == (0.01, 0.99) and rec.checkpoint_format == "safetensors"
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    x = torch.rand(1, 2, 56, 56)  # dynamic image size: a 4x4 grid is enough to compare outputs
    half = save_safetensors(a, tmp_path / "half.safetensors", {"model": "B2_vits14_softcon"}, dtype=torch.float16)
    assert half.stat().st_size < out.stat().st_size * 0.6
    c, _ = create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=half)
    assert c.model.pos_embed.dtype == torch.float32
    with torch.no_grad():
        assert (c(x) - a(x)).abs().max() < 5e-2
    assert not list(tmp_path.glob("*.tmp"))
    # a truncated safetensors file is a clear error
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(out.read_bytes()[:1000])
    with pytest.raises(SoftConError, match="truncated or corrupt"):
        create_encoder("B2_vits14_softcon", pretrained=False, checkpoint=cut)


def test_convert_refuses_wrong_file(vits_b2_file, tmp_path):
    out = tmp_path / "x.safetensors"
    with pytest.raises(SoftConError):
        convert("B13_vits14_softcon", vits_b2_file, out)
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# RGB initialisation (train uses this)
# ------------------------------------------------------------------------------------------
def test_resample_pos_embed_bicubic():
    pe = torch.randn(1, 1 + 37 * 37, 8)
    out = resample_pos_embed(pe, (16, 16))
    assert out.shape == (1, 257, 8)
    assert torch.equal(out[:, 0], pe[:, 0])
    grid = pe[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 256, 8)
    assert torch.allclose(out[:, 1:], want)
    const = torch.full((1, 1 + 37 * 37, 4), 0.25)
    assert torch.allclose(resample_pos_embed(const, 16), torch.full((1, 257, 4), 0.25), atol=1e-6)
    assert torch.equal(resample_pos_embed(pe, 37), pe)


def test_adapt_input_conv_modes():
    w = torch.randn(8, 3, 14, 14)
    bands = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
    band_map = [{"B4": 0, "B3": 1, "B2": 2}.get(b) for b in bands]
    inf = adapt_input_conv(w, 13, "inflate", band_map)
    assert inf.shape == (8, 13, 14, 14)
    assert torch.allclose(inf[:, 3], w[:, 0] * 3 / 13) and torch.allclose(inf[:, 1], w[:, 2] * 3 / 13)
    assert torch.allclose(inf[:, 0], w.mean(1) * 3 / 13)
    cyc = adapt_input_conv(w, 2, "inflate")
    assert torch.allclose(cyc, w[:, :2] * 1.5)
    rnd = adapt_input_conv(w, 13, "random")
    bound = 1 / math.sqrt(13 * 14 * 14)  # nn.Conv2d default init
    assert rnd.shape == (8, 13, 14, 14) and rnd.abs().max() <= bound and rnd.std() > bound / 3
    with pytest.raises(ValueError):
        adapt_input_conv(w, 13, "copy")


def test_init_from_rgb_dinov2(tmp_path):
    """A DINOv2 ViT-S/14 RGB release (518 px: pos_embed (1,1370,384), mask_token) -> 13-band 224 px."""
    sd = dinov2_published(384, 12, 3, seed=5)
    sd["pos_embed"] = torch.randn(1, 1370, 384) * 0.02
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(sd, path)
    encoder = build_encoder("vit_small_patch14_dinov2", 13, 224)
    bands = get_record("B13_vits14_softcon").bands
    notes = init_from_rgb(encoder, path, mode="inflate", bands=bands)
    m = encoder.model
    assert any("(1, 1370, 384) -> (1, 257, 384)" in n for n in notes) and any("mask_token" in n for n in notes)
    assert torch.allclose(m.pos_embed, resample_pos_embed(sd["pos_embed"], 16))
    assert torch.allclose(m.patch_embed.proj.weight[:, 3], sd["patch_embed.proj.weight"][:, 0] * 3 / 13)
    assert torch.equal(m.blocks[11].mlp.fc2.weight, sd["blocks.11.mlp.fc2.weight"])
    assert torch.equal(m.cls_token, sd["cls_token"])
    # random first layer (the paper's choice), everything else from the RGB model
    enc2 = build_encoder("vit_small_patch14_dinov2", 2, 224)
    init_from_rgb(enc2, sd, mode="random")
    assert enc2.model.patch_embed.proj.weight.shape == (384, 2, 14, 14)
    assert torch.equal(enc2.model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


def test_init_from_rgb_resnet50_drops_fc():
    import torchvision

    ref = torchvision.models.resnet50(weights=None)
    sd = ref.state_dict()  # ImageNet-style RGB file with fc
    encoder = build_encoder("resnet50", 13, 224)
    notes = init_from_rgb(encoder, sd, mode="random")
    assert any("fc.weight" in n for n in notes)
    assert torch.equal(encoder.model.layer4[2].conv3.weight, sd["layer4.2.conv3.weight"])
    assert encoder.model.conv1.weight.shape == (64, 13, 7, 7)
    vit = build_encoder("vit_small_patch14_dinov2", 13, 224)
    with pytest.raises(SoftConError, match="no patch_embed.proj.weight"):
        init_from_rgb(vit, sd)
