"""The dependency check and installer: what a user without torch in QGIS's Python meets on first load.

The full path (a fresh profile, the real pip against the package index, QGIS's system Python, then a
Classify run) is ``scripts/try_install.sh``; it downloads about 370 MB (1.5 GB on disk), so it is not a
test. These tests cover each piece with real pip runs on local projects, and the sympy shadowing a Debian
user met with the real Debian dist-packages.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtWidgets import QPushButton

import qgis_helpers as helpers
import softcon_qgis
from softcon_qgis import deps, install
from softcon_qgis.plugin import InstallTask, SoftConPlugin
from softcon_qgis import worker

pytestmark = pytest.mark.qgis
FAKE = ("softcon_absent_pkg", "softcon-absent-pkg==1.0")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the Python Debian's QGIS runs
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")


def tiny_project(tmp_path, name="softcon_tiny_dep"):
    """A real, minimal installable project (no network needed to install it)."""
    proj = tmp_path / f"proj_{name}"
    (proj / name).mkdir(parents=True)
    (proj / name / "__init__.py").write_text("VALUE = 42\n")
    (proj / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "1.0"\n')
    return proj


def tiny_wheel(tmp_path, name="softcon_tiny_dep") -> Path:
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-index", "--no-build-isolation", "--no-deps",
                    "-q", "-w", str(out), str(tiny_project(tmp_path, name))], check=True, timeout=300)
    return next(out.glob(f"{name}-*.whl"))


OFFLINE = ("--no-index", "--no-build-isolation")


# ------------------------------------------------------------------------------------- requirements
def test_requirements_follow_pyproject(repo_root):
    declared = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.split("#")[0].replace(" ", "") for d in declared}
    for module, requirement in deps.REQUIREMENTS:
        name = re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0].lower()
        assert name in pins, f"{requirement} is not a project dependency"
        assert requirement == pins[name], (requirement, pins[name])
    for needed in ("torch", "timm", "rasterio", "shapely", "pyproj", "scikit-learn", "safetensors", "numpy"):
        assert needed in {re.split(r"[<>=!~ ]", r, maxsplit=1)[0] for _, r in deps.REQUIREMENTS}


def test_installer_covers_every_package_core_imports(repo_root):
    """A package core imports (e.g. skops, added with the saved random forests) but the installer leaves out
    reaches the user as an ImportError in the middle of a run; the import check after pip must include the
    ones that save and load classifiers."""
    pulled_in_by = {"affine": "rasterio", "threadpoolctl": "sklearn"}  # dependencies of a listed package
    listed = {module for module, _ in deps.REQUIREMENTS}
    imported = set()
    for path in (repo_root / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            imported |= {n.split(".")[0] for n in names} - set(sys.stdlib_module_names)
    assert "skops" in imported
    assert {pulled_in_by.get(m, m) for m in imported} <= listed, sorted(imported - listed)
    assert set(deps.VERIFY_MODULES) <= listed and {"sklearn", "skops"} <= set(deps.VERIFY_MODULES)


def test_torch_pin_is_the_tested_cpu_build(repo_root):
    """The installer's torch is the project's tested one; CPU only needs ``+cpu`` on Linux."""
    pinned = re.search(r"^torch==(\S+)$", (repo_root / "constraints-cpu.txt").read_text(), re.M).group(1)
    assert install.torch_requirement("cpu", "Linux") == f"torch=={pinned}"
    assert install.torch_requirement("cuda", "Linux") == f"torch=={deps.TORCH_VERSION}"
    assert install.torch_requirement("cpu", "Windows") == install.torch_requirement("cpu", "Darwin") == \
        f"torch=={deps.TORCH_VERSION}"
    reqs = install.install_requirements("cpu", "Linux")
    assert len(reqs) == len(deps.REQUIREMENTS) and f"torch=={pinned}" in reqs and "numpy>=1.26,<2" in reqs


def test_pip_command(tmp_path):
    cmd = install.pip_command(install.install_requirements("cpu"), tmp_path, python="/usr/bin/python3")
    assert cmd[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path)
    if sys.platform.startswith("linux"):
        assert deps.TORCH_CPU_INDEX in cmd
        assert deps.TORCH_CPU_INDEX not in install.pip_command(["torch==2.13.0+cpu"], tmp_path, cpu_index=False)
        assert deps.TORCH_CPU_INDEX not in install.pip_command(["torch==2.13.0"], tmp_path, build="cuda")
    assert deps.TORCH_CPU_INDEX not in install.pip_command(["timm==1.0.31"], tmp_path)


def test_index_reachable():
    assert not install.index_reachable("https://127.0.0.1:9/simple", timeout=2)  # the discard port: refused


# ------------------------------------------------------------------------------------- the interpreter
def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_find_python_linux_and_venv(tmp_path):
    usr = tmp_path / "usr"
    exe = touch(usr / "bin" / "python3.11")
    # Debian's QGIS: sys.executable is /usr/bin/qgis.bin, the prefix is /usr
    assert deps.find_python(str(usr), str(usr), (3, 11), "Linux", str(usr / "bin" / "qgis.bin")) == str(exe)
    venv = tmp_path / "venv"
    touch(venv / "bin" / "python")
    assert deps.find_python(str(venv), str(venv), (3, 11), "Linux") == str(venv / "bin" / "python")
    assert deps.find_python(str(tmp_path / "none"), str(tmp_path / "none"), (3, 11), "Linux",
                            str(usr / "bin" / "qgis.bin")) is None


def test_find_python_windows_osgeo4w(tmp_path):
    """OSGeo4W and the standalone installer: sys.executable is bin/qgis-bin.exe, sys.prefix apps/Python312."""
    root = tmp_path / "OSGeo4W"
    touch(root / "bin" / "qgis-bin.exe")
    touch(root / "bin" / "python3.exe")  # a launcher .bat/.exe that needs o4w_env: not the one to use
    exe = touch(root / "apps" / "Python312" / "python.exe")
    prefix = str(root / "apps" / "Python312")
    assert deps.find_python(prefix, prefix, (3, 12), "Windows", str(root / "bin" / "qgis-bin.exe")) == str(exe)


def test_find_python_macos_bundle(tmp_path):
    """QGIS.app: a Python.framework inside the bundle, or the interpreter in Contents/MacOS/bin."""
    app = tmp_path / "QGIS.app"
    framework = app / "Contents" / "Frameworks" / "Python.framework" / "Versions" / "3.11"
    exe = touch(framework / "bin" / "python3.11")
    main = str(app / "Contents" / "MacOS" / "QGIS")
    assert deps.find_python(str(framework), str(framework), (3, 11), "Darwin", main) == str(exe)
    exe.unlink()
    macos_bin = touch(app / "Contents" / "MacOS" / "bin" / "python3")
    assert deps.find_python(str(framework), str(framework), (3, 11), "Darwin", main) == str(macos_bin)


def test_python_executable_is_this_python():
    found = Path(deps.python_executable())
    assert found.is_file() and found.name.startswith("python")
    out = subprocess.run([str(found), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == sys.prefix


# ------------------------------------------------------------------------------------- the worker's path
def test_worker_environment_puts_the_packages_before_site_packages(tmp_path):
    """The worker gets the plugin and the packages folder first on PYTHONPATH: before the system's
    site-/dist-packages (Debian's sympy there breaks torch), and the JSON-lines protocol on."""

    folder = deps.deps_dir(tmp_path)
    assert folder == tmp_path / "python" / "softcon_qgis_deps" / f"py{sys.version_info[0]}{sys.version_info[1]}"
    env = worker.environment(folder, base={"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(worker.PLUGIN_PARENT), "/elsewhere"]  # absent: not added
    folder.mkdir(parents=True)
    env = worker.environment(folder, base={"PATH": "/usr/bin"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(worker.PLUGIN_PARENT), str(folder)]
    assert env["SOFTCON_PROGRESS"] == "jsonl" and env["PYTHONNOUSERSITE"] == "1"
    path = json.loads(subprocess.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.path))"],
                                     capture_output=True, text=True, check=True, env=env).stdout)
    first_site = next(i for i, p in enumerate(path) if Path(p).name in ("site-packages", "dist-packages"))
    assert path.index(str(folder)) < first_site


@pytest.mark.skipif(not (SYSTEM_PYTHON.is_file() and (DIST_PACKAGES / "sympy").is_dir()),
                    reason="needs Debian's python3 with its sympy 1.11 (python3-sympy)")
def test_verify_catches_the_debian_sympy_shadowing():
    """The failure a Debian user met: the packages folder *after* dist-packages lets Debian's sympy 1.11
    hide the sympy torch needs. verify() sees it in a subprocess of the system Python with exactly that
    path; in the worker's own environment (the folder first on PYTHONPATH) the same import works."""
    venv_site = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    base = json.loads(subprocess.run([str(SYSTEM_PYTHON), "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                                     capture_output=True, text=True, check=True).stdout)
    base = [p for p in base if "-packages" not in p] + [str(DIST_PACKAGES)]
    module = ("torch.utils._sympy.functions",)  # the torch module that imports sympy's newer API
    appended = install.verify(venv_site, base + [str(venv_site)], str(SYSTEM_PYTHON), module)
    assert len(appended) == 1 and "equal_valued" in appended[0].error, appended
    assert install.verify(venv_site, None, str(SYSTEM_PYTHON), module) == []


# ------------------------------------------------------------------------------------- the start-up check
def test_start_up_check_reads_the_install_record(tmp_path, monkeypatch):
    """What QGIS checks on every start without importing anything: the install record of the plugin's packages
    folder, or (without one) that every module is on the path; a developer's SOFTCON_PYTHON is trusted."""
    monkeypatch.delenv(deps.PYTHON_OVERRIDE, raising=False)
    folder = tmp_path / "deps"
    assert deps.problem(folder) == ""  # no folder: everything is on this Python's path
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (FAKE,))
    assert deps.problem(folder) == "QGIS's Python has no softcon_absent_pkg."
    folder.mkdir()
    assert "no install record" in deps.problem(folder)
    deps.write_stamp(folder, "cpu")
    assert deps.problem(folder) == ""
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS[:-1])  # a plugin update that needs other packages
    assert "not the ones this plugin version needs (requirements)" in deps.problem(folder)
    monkeypatch.setenv(deps.PYTHON_OVERRIDE, sys.executable)
    assert deps.problem(folder) == ""


def test_explain_names_the_fix(tmp_path):
    missing = [deps.Missing("softcon_absent_pkg", "softcon-absent-pkg==1.0", "No module named 'softcon_absent_pkg'")]
    text = install.explain(missing, target=tmp_path / "deps")
    assert "softcon_absent_pkg" in text and "softcon-absent-pkg==1.0" in text and "no restart" in text
    fix = install.fix_command(tmp_path / "deps")
    assert fix in text and f"--target {tmp_path / 'deps'}" in fix and "-m pip install" in fix
    assert "torch==2.13.0" in fix and "numpy>=1.26,<2" in fix  # the whole set, never only the missing one
    assert "Install Python dependencies" in text


# ------------------------------------------------------------------------------------- plan and install
def test_plan_states_the_download_size(tmp_path):
    wheel = tiny_wheel(tmp_path)
    plan, output = install.plan("cpu", python=sys.executable, extra_args=("--no-index",), requirements=[str(wheel)])
    assert plan is not None, output
    assert [(n, v) for n, v, _ in plan.packages] == [("softcon-tiny-dep", "1.0")]
    assert plan.download_bytes == wheel.stat().st_size and plan.unknown_sizes == []
    assert "1 packages" in plan.summary() and "Download: 0 MB" in plan.summary()
    assert importlib.util.find_spec("softcon_tiny_dep") is None  # a dry run installs nothing
    plan, output = install.plan("cpu", python=sys.executable, extra_args=("--no-index",),
                                requirements=["softcon-absent-pkg==1.0"])
    assert plan is None and "softcon-absent-pkg" in output


def test_install_replaces_the_folder_only_when_the_new_one_imports(tmp_path, monkeypatch):
    """Real pip, offline: into a fresh folder, checked by importing it in a subprocess, then swapped in.
    A failing pip run or a package that does not import leaves the previous folder untouched."""
    target = tmp_path / "deps"
    lines = []
    ok, output = install.install([str(tiny_project(tmp_path))], target=target, python=sys.executable,
                                 extra_args=OFFLINE, timeout=300, on_line=lines.append,
                                 verify_modules=("softcon_tiny_dep",))
    assert ok, output
    assert (target / "softcon_tiny_dep" / "__init__.py").is_file()
    assert any(ln.startswith("$ ") and "--target" in ln for ln in lines)
    assert any("Checking that the packages import" in ln for ln in lines)
    assert str(target) not in sys.path  # QGIS's own process never imports the packages: only the worker does
    assert json.loads((target / deps.STAMP).read_text())["requirements"] == [r for _, r in deps.REQUIREMENTS]
    # pip fails: nothing changes
    ok, output = install.install(["softcon-absent-pkg==1.0"], target=target, python=sys.executable,
                                 extra_args=("--no-index",), timeout=300)
    assert not ok and "softcon-absent-pkg" in output and "nothing was changed" in output
    assert (target / "softcon_tiny_dep").is_dir()
    # pip succeeds but the package does not import: the fix is named, nothing changes
    broken = tiny_project(tmp_path, "softcon_tiny_broken")
    (broken / "softcon_tiny_broken" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    ok, output = install.install([str(broken)], target=target, python=sys.executable, extra_args=OFFLINE,
                                 timeout=300, verify_modules=("softcon_tiny_broken",))
    assert not ok and "broken on purpose" in output and "The one command that fixes it" in output
    assert (target / "softcon_tiny_dep").is_dir() and not (target / "softcon_tiny_broken").exists()
    assert list(tmp_path.glob(".deps-*")) == []  # no staging folder left behind


def test_install_can_be_cancelled(tmp_path):
    ok, output = install.install([str(tiny_project(tmp_path))], target=tmp_path / "deps", python=sys.executable,
                                 extra_args=OFFLINE, timeout=300, is_cancelled=lambda: True)
    assert not ok and "stopped" in output.lower() and not (tmp_path / "deps").exists()
    assert list(tmp_path.glob(".deps-new-*")) == []


# ------------------------------------------------------------------------------------- in QGIS
def test_plugin_gui_reports_missing_packages(qgis_iface, monkeypatch):
    """Desktop start-up with a package missing: a message bar with an Install button and the full
    explanation in the log, no traceback; the menu action is added and removed."""
    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, level: logged.append((tag, msg, level)))
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (FAKE,))
    monkeypatch.delenv(deps.PYTHON_OVERRIDE, raising=False)
    monkeypatch.setattr(deps, "deps_dir", lambda settings_dir=None: Path("/nonexistent/softcon_qgis_deps"))
    plugin = softcon_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert QgsApplication.processingRegistry().providerById("softcon") is not None
        assert plugin.action is not None and not plugin.action.icon().isNull()
        item = qgis_iface.messageBar().currentItem()
        assert item is not None and "softcon_absent_pkg" in item.text()
        assert any(b.text() == "Install…" for b in item.findChildren(QPushButton))
        assert any(tag == "SoftCon" and "softcon-absent-pkg==1.0" in msg and level == Qgis.Warning
                   for tag, msg, level in logged)
    finally:
        plugin.unload()
        helpers.drop_layers()
    assert QgsApplication.processingRegistry().providerById("softcon") is None


def test_install_task_shows_progress_and_logs_pip(qgis_iface, tmp_path, monkeypatch):
    """The task behind Install…: pip's lines in the SoftCon log tab, the progress bar moving, the result
    in the message bar."""
    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, level: logged.append((tag, msg)))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip reads this inverted: 0 = no isolation
    plugin = SoftConPlugin()
    task = InstallTask([str(tiny_project(tmp_path, "softcon_tiny_dep2"))], plugin._install_done,
                       expected_packages=1, target=tmp_path / "deps")
    progress = []
    task.progressChanged.connect(progress.append)
    task.verify_modules = ("softcon_tiny_dep2",)
    assert task.run(), task.output
    task.finished(True)
    assert (tmp_path / "deps" / "softcon_tiny_dep2").is_dir()
    assert progress and max(progress) >= 70
    assert any(tag == "SoftCon" and msg.startswith("Processing ") for tag, msg in logged)
    assert any("installed" in m.lower() for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    sys.modules.pop("softcon_tiny_dep2", None)


def test_unreachable_packages_name_the_fix(qgis_iface, monkeypatch):
    """When pip cannot resolve (no network, CPU index unreachable) the message bar says so and the full
    text, with the one command that fixes it, is in the log."""
    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, level: logged.append(msg))
    SoftConPlugin()._planned("cpu", None, "ERROR: No matching distribution found for torch==2.13.0+cpu")
    assert any("cannot find the packages" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))
    assert any(install.fix_command(build="cpu") in m for m in logged)


def test_install_is_not_started_twice(qgis_iface, tmp_path):
    plugin = SoftConPlugin()
    queued = InstallTask(["softcon-absent-pkg==1.0"], plugin._install_done, target=tmp_path / "deps")
    plugin.task = queued  # queued, not yet run: pressing Install… again must not start a second pip
    plugin.start_install()
    assert plugin.task is queued
    assert any("already running" in m for m in qgis_iface.messageBar().get_messages(Qgis.Info))


def test_algorithm_explains_missing_packages_instead_of_a_traceback(qgis_processing, monkeypatch):
    """The worker's Python lacks the packages (here: Debian's own python3, without torch or rasterio): the run
    fails with the missing module and the one command that fixes it, not a traceback."""
    if not SYSTEM_PYTHON.is_file():
        pytest.skip("needs the system Python")
    monkeypatch.setenv(deps.PYTHON_OVERRIDE, str(SYSTEM_PYTHON))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    plugin = helpers.load_provider()
    try:
        ok, _, fb = helpers.run("softcon:modelinfo", {"ACTION": "list"})
    finally:
        plugin.unload()
    message = "\n".join(fb.errors)
    assert not ok and "No module named" in message and "-m pip install" in message, message
    assert "Traceback" not in message
