"""Build the installable QGIS plugin zip: ``dist/softcon_qgis-<version>.zip`` (``make plugin-zip``).

Layout inside the zip (what QGIS's "Install from ZIP" and the plugin repository expect)::

    softcon_qgis/__init__.py, plugin.py, provider.py, deps.py, install.py, styles.py, algorithms/*.py
    softcon_qgis/metadata.txt          copied from the repository's top-level metadata.txt
    softcon_qgis/LICENSE               when the repository has one
    softcon_qgis/core/...              the repository's core package (the symlink is dereferenced);
                                       core imports itself relatively, so it works as a subpackage and
                                       never collides with another plugin's top-level ``core``

Only files git tracks go in (plus the default model's weights, which ``scripts/build_default_model.sh``
builds): whatever else lies in the folder (a private key, a secrets file, an editor's backup) stays out.
A tracked symlink is followed only when it points inside the repository; one that leaves it stops the
build. Left out as well: tests, caches, bytecode, and every weights file except the default model's small shipped
weights and position-bias table (:data:`SHIPPED_WEIGHTS`, at most 10 MB each): its record points there, and without it the plugin could not
work offline. ``softcon_tiny_s2`` (the pretraining pipeline's from-scratch reference, not for maps) stays out:
it was 58 % of the zip, and the plugin offers a model only when it can get its weights. Published SoftCon weights (100+ MB) are downloaded on request by
"Model info and download" instead. The zip is reproducible: sorted entries, fixed timestamps.
"""
from __future__ import annotations

import argparse
import configparser
import py_compile
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "softcon_qgis"
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker", "license", "hasProcessingProvider")
MAX_WEIGHTS_BYTES = 10 * 2**20
#: The only weights in the zip: the default model's (core.models.registry.DEFAULT_MODEL), so it works offline, and
#: its measured position bias (core.embed.position_bias), without which dense maps from the zip would differ.
SHIPPED_WEIGHTS = ("galileo_nano_s2.safetensors", "galileo_nano_s2.position_bias.safetensors")
SKIP_DIRS = {"__pycache__", "tests", ".pytest_cache", ".ipynb_checkpoints"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".tmp", ".incomplete"}
FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def read_metadata(path: Path = ROOT / "metadata.txt") -> configparser.SectionProxy:
    """The ``[general]`` section of metadata.txt, checked for the keys the plugin repository requires."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    cp.read(path, encoding="utf-8")
    if "general" not in cp:
        raise SystemExit(f"{path}: no [general] section")
    general = cp["general"]
    missing = [k for k in REQUIRED_METADATA if not general.get(k, "").strip()]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    return general


def tracked(root: Path = ROOT) -> set[str]:
    """Paths (relative, POSIX) that git tracks in ``root``."""
    try:
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"{root} is not a git checkout ({e}); the zip is built from the files git tracks.") from None
    return {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n}


def _inside(path: Path, root: Path) -> Path:
    """``path`` with symlinks resolved; stops the build when that leaves ``root``."""
    real = path.resolve()
    if real != root and root not in real.parents:
        raise SystemExit(f"{path} is a symlink to {real}, outside the repository {root}; remove it or "
                         f"replace it with the file itself.")
    return real


def plugin_files(root: Path = ROOT) -> list[tuple[Path, str]]:
    """(file on disk, name in the zip) for every tracked file the plugin needs, symlinks inside the repo followed."""
    root = root.resolve()
    files = tracked(root)
    out: list[tuple[Path, str]] = []

    def add(path: Path, name: str) -> None:
        """``path`` (inside ``root``, symlinks resolved) as ``name``, if tracked and not left out."""
        if path.suffix in SKIP_SUFFIXES or name == f"{PLUGIN}/metadata.txt":  # metadata: from the top level
            return
        if path.suffix in (".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".npz"):
            if (name.endswith(tuple(f"/core/weights/{w}" for w in SHIPPED_WEIGHTS))
                    and path.stat().st_size <= MAX_WEIGHTS_BYTES):
                out.append((path, name))  # built weights: shipped even when git does not track them
            else:
                print(f"  leaving out weights file {name} ({path.stat().st_size / 2**20:.1f} MB)")
        elif path.relative_to(root).as_posix() in files:
            out.append((path, name))

    def walk(folder: Path, arc: str) -> None:
        for path in sorted(folder.iterdir()):
            name = f"{arc}/{path.name}"
            if path.name in SKIP_DIRS or path.name.startswith("."):
                continue
            if path.is_symlink():
                if path.relative_to(root).as_posix() not in files:
                    continue  # an untracked link is not followed
                path = _inside(path, root)
            if path.is_dir():
                walk(path, name)
            elif path.is_file():
                add(path, name)

    walk(root / PLUGIN, PLUGIN)
    if not any(n == f"{PLUGIN}/core/__init__.py" for _, n in out):
        raise SystemExit(f"{root / PLUGIN}/core is missing: it must be a symlink to ../core (or a copy of it)")
    out.append((root / "metadata.txt", f"{PLUGIN}/metadata.txt"))
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if name in files:
            out.append((root / name, f"{PLUGIN}/LICENSE"))
            break
    return sorted(out, key=lambda t: t[1])


def build(out_dir: Path = ROOT / "dist", root: Path = ROOT) -> Path:
    """Write the zip of the plugin in ``root``; returns its path."""
    meta = read_metadata(root / "metadata.txt")
    files = plugin_files(root)
    with tempfile.TemporaryDirectory() as tmp:  # every module must at least compile
        for path, name in files:
            if name.endswith(".py"):
                py_compile.compile(str(path), cfile=str(Path(tmp) / "x.pyc"), doraise=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}-{meta['version']}.zip"
    part = target.with_name(target.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path, name in files:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    part.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=ROOT / "dist", help="folder for the zip (default dist/)")
    p.add_argument("--root", type=Path, default=ROOT, help="repository to package (default: this one)")
    args = p.parse_args(argv)
    target = build(args.out_dir, args.root)
    with zipfile.ZipFile(target) as zf:
        n, size = len(zf.infolist()), sum(i.file_size for i in zf.infolist())
    print(f"{target} ({n} files, {size / 2**20:.1f} MB unpacked, {target.stat().st_size / 2**20:.1f} MB zipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
