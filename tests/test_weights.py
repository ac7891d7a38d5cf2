"""Weights cache, offline errors and sha256 checks, without touching the network."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from core.models import weights
from core.errors import SoftConError
from core.models.registry import DEFAULT_MODEL, get_record
from core.models.encoders import create_encoder
from core.models.cli import main as models_main


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTCON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


def test_cache_dir_follows_env(cache):
    assert weights.weights_dir() == cache / "weights" and weights.weights_dir().is_dir()


def test_offline_error_says_where_to_put_the_file(cache):
    record = get_record("B13_vits14_softcon")
    assert weights.cached_path(record) is None
    with pytest.raises(SoftConError) as err:
        weights.weights_path(record)
    msg = str(err.value)
    print(msg)
    assert "https://huggingface.co/wangyi111/softcon/resolve/main/B13_vits14_softcon.pth" in msg
    assert str(cache / "weights" / "B13_vits14_softcon.pth") in msg
    assert "HF_HUB_OFFLINE" in msg
    assert not list((cache / "weights").iterdir())  # nothing half-written


def test_hub_client_offline_is_a_clear_error(cache):
    """The hub client itself (offline mode from the test environment) -> same hint, no traceback."""
    record = get_record("B2_rn50_softcon")
    with pytest.raises(SoftConError) as err:
        weights._download_hf(record, None)
    assert "B2_rn50_softcon.pth" in str(err.value) and "save it as" in str(err.value)


def test_unreachable_https_is_a_clear_error(cache, monkeypatch):
    """Plain HTTPS records: a refused connection (loopback, port 9) says how to get the file by hand."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("SOFTCON_OFFLINE", raising=False)
    record = dataclasses.replace(get_record("B2_rn50_softcon"), hf_repo=None, url="http://127.0.0.1:9/B2_rn50_softcon.pth")
    with pytest.raises(SoftConError) as err:
        weights.weights_path(record)
    assert "http://127.0.0.1:9/B2_rn50_softcon.pth" in str(err.value) and "resume" in str(err.value)
    assert not (cache / "weights" / "B2_rn50_softcon.pth").exists()


def test_file_put_by_hand_is_used_and_sha256_checked(cache, tmp_path, capsys):
    record = get_record("B2_rn50_softcon")
    target = cache / "weights" / "B2_rn50_softcon.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not really weights")
    assert weights.cached_path(record) == target
    assert weights.weights_path(record) == target  # no sha256 in the record: accepted
    good = hashlib.sha256(b"not really weights").hexdigest()
    assert weights.weights_path(dataclasses.replace(record, sha256=good)) == target
    bad = "0" * 64
    with pytest.raises(SoftConError) as err:
        weights.weights_path(dataclasses.replace(record, sha256=bad))
    msg = str(err.value)
    assert good in msg and bad in msg and "Delete the file" in msg
    # the CLI reports it as cached, with its size
    assert models_main(["info", "B2_rn50_softcon"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cached"] is True and info["size_bytes"] == 18 and info["cached_path"] == str(target)
    assert models_main(["list"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("B2_rn50_softcon")][0]
    assert line.rstrip().endswith(" cached")
    # and a broken file there fails to load with a clear message
    with pytest.raises(SoftConError, match="truncated or not a PyTorch checkpoint"):
        create_encoder("B2_rn50_softcon")


def test_default_model_ships_and_a_missing_local_file_says_where(cache, tmp_path):
    record = get_record(DEFAULT_MODEL)
    assert record.arch == "galileo_nano" and record.input_size == 64
    assert weights.weights_path(record) == Path(record.local_path)  # shipped: no download needed
    gone = dataclasses.replace(record, local_path=str(tmp_path / "galileo_nano_s2.safetensors"))
    with pytest.raises(SoftConError) as err:
        weights.weights_path(gone)
    assert "galileo_nano_s2.safetensors" in str(err.value)
    assert weights.is_offline()


def test_register_checks_a_file_copied_by_hand_and_caches_it(cache, tmp_path, capsys):
    """``python -m core.models register``: sha256 against the record, strict load, atomic copy into the cache."""
    shipped = Path(get_record("softcon_tiny_s2").local_path)
    copy = tmp_path / "from_a_usb_stick.safetensors"
    shutil.copyfile(shipped, copy)
    assert models_main(["register", str(copy)]) == 0  # the model named in the file's metadata
    cached = cache / "weights" / "softcon_tiny_s2.safetensors"
    assert cached.read_bytes() == shipped.read_bytes()
    out, err = capsys.readouterr()
    assert f"registered {copy} as {cached}" in out and "ships its own weights" in err
    # the wrong file under a model whose record pins its sha256: refused, nothing copied
    assert models_main(["register", str(copy), "--model", "galileo_nano_s2"]) == 2
    assert "sha256" in capsys.readouterr().err and not (cache / "weights" / "galileo_nano_s2.safetensors").exists()
    # a record without a sha256: the strict load names what does not fit
    assert models_main(["register", str(copy), "--model", "B13_vits14_softcon"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and not (cache / "weights" / "B13_vits14_softcon.pth").exists()
    # a file that does not say what it is, and no --model
    bare = tmp_path / "bare.pth"
    torch.save({"w": torch.zeros(1)}, bare)
    assert models_main(["register", str(bare)]) == 2
    assert "--model NAME" in capsys.readouterr().err
    assert sorted(p.name for p in (cache / "weights").iterdir()) == ["softcon_tiny_s2.safetensors"]  # no temp files
