"""The dependency check and installer: what a user without torch in QGIS's Python meets on first load."""
from __future__ import annotations

import re
import sys
import tomllib

import pytest
from qgis.core import Qgis, QgsApplication

import qgis_helpers as H
from softcon_qgis import deps

pytestmark = pytest.mark.qgis
FAKE = ("softcon_absent_pkg", "softcon-absent-pkg==1.0")


def tiny_project(tmp_path, name="softcon_tiny_dep"):
    """A real, minimal installable project (no network needed to install it)."""
    proj = tmp_path / "proj"
    (proj / name).mkdir(parents=True)
    (proj / name / "__init__.py").write_text("VALUE = 42\n")
    (proj / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "1.0"\n')
    return proj


def test_requirements_follow_pyproject(repo_root):
    declared = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.split("#")[0].replace(" ", "") for d in declared}
    for module, requirement in deps.REQUIREMENTS:
        name = re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0].lower()
        assert name in pins, f"{requirement} is not a project dependency"
        assert requirement == pins[name], (requirement, pins[name])
    for needed in ("torch", "timm", "rasterio", "shapely", "pyproj", "scikit-learn", "safetensors"):
        assert needed in {re.split(r"[<>=!~ ]", r, maxsplit=1)[0] for _, r in deps.REQUIREMENTS}


def test_check_finds_missing_and_explains_the_fix(tmp_path):
    assert deps.check() == []  # everything imports in this environment
    missing = deps.check(deps.REQUIREMENTS + (FAKE,))
    assert [m.module for m in missing] == ["softcon_absent_pkg"]
    assert "No module named" in missing[0].error
    text = deps.explain(missing, target=tmp_path / "deps")
    assert "softcon_absent_pkg" in text and "softcon-absent-pkg==1.0" in text
    assert f'--target {tmp_path / "deps"}' in text and "-m pip install" in text
    assert "Install Python dependencies" in text


def test_pip_command_uses_cpu_torch_on_linux(tmp_path):
    cmd = deps.pip_command(["torch>=2.4,<=2.14.1", "timm==1.0.31"], tmp_path, python="/usr/bin/python3")
    assert cmd[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert cmd[cmd.index("--target") + 1] == str(tmp_path)
    if sys.platform.startswith("linux"):
        assert deps.TORCH_CPU_INDEX in cmd
    assert deps.TORCH_CPU_INDEX not in deps.pip_command(["timm==1.0.31"], tmp_path)


def test_install_into_own_folder_then_importable(tmp_path, monkeypatch):
    """The real pip call, offline: a local project into the plugin's own folder, then on sys.path."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    target = tmp_path / "deps"
    ok, output = deps.install([str(tiny_project(tmp_path))], target=target, python=sys.executable,
                              extra_args=("--no-index", "--no-build-isolation"), timeout=300)
    assert ok, output
    assert (target / "softcon_tiny_dep" / "__init__.py").is_file()
    assert str(target) in sys.path and sys.path[-1] == str(target)  # appended: never shadows QGIS's packages
    import softcon_tiny_dep

    assert softcon_tiny_dep.VALUE == 42
    del sys.modules["softcon_tiny_dep"]
    ok, output = deps.install(["softcon-absent-pkg==1.0"], target=target, python=sys.executable,
                              extra_args=("--no-index",), timeout=300)
    assert not ok and "softcon-absent-pkg" in output


def test_deps_folder_is_in_the_profile_and_versioned(tmp_path):
    folder = deps.deps_dir(tmp_path)
    assert folder == tmp_path / "python" / "softcon_qgis_deps" / f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert not deps.add_deps_to_path(folder)  # absent: nothing added


def test_plugin_gui_reports_missing_packages(qgis_iface, monkeypatch):
    """Desktop start-up with a package missing: a message bar with an Install button and the full
    explanation in the log, no traceback; the menu action is added and removed."""
    import softcon_qgis

    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, level: logged.append((tag, msg, level)))
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (FAKE,))
    plugin = softcon_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert QgsApplication.processingRegistry().providerById("softcon") is not None
        assert plugin.action is not None
        bar = qgis_iface.messageBar()
        item = bar.currentItem()
        assert item is not None and "softcon_absent_pkg" in item.text()
        assert any(tag == "SoftCon" and "softcon-absent-pkg==1.0" in msg and level == Qgis.Warning
                   for tag, msg, level in logged)
    finally:
        plugin.unload()
        H.drop_layers()
    assert QgsApplication.processingRegistry().providerById("softcon") is None


def test_install_task_reports_to_the_message_bar(qgis_iface, tmp_path, monkeypatch):
    from softcon_qgis.plugin import InstallTask, SoftConPlugin

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(deps, "deps_dir", lambda settings_dir=None: tmp_path / "deps")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip reads this inverted: 0 = no isolation
    plugin = SoftConPlugin()
    task = InstallTask([str(tiny_project(tmp_path, "softcon_tiny_dep2"))], plugin._install_done)
    assert task.run(), task.output
    task.finished(True)
    assert (tmp_path / "deps" / "softcon_tiny_dep2").is_dir()
    assert any("installed" in m.lower() for m in qgis_iface.messageBar().get_messages(Qgis.Success))
    sys.modules.pop("softcon_tiny_dep2", None)


def test_algorithm_explains_missing_packages_instead_of_a_traceback(qgis_processing, monkeypatch):
    plugin = H.load_provider()
    try:
        monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (FAKE,))
        ok, _, fb = H.run("softcon:modelinfo", {"ACTION": "list"})
    finally:
        plugin.unload()
    message = "\n".join(fb.errors)
    assert not ok and "softcon-absent-pkg==1.0" in message and "-m pip install" in message
    assert "Traceback" not in message
