"""The plugin object QGIS creates through ``classFactory``: registers the Processing provider and,
in desktop QGIS, checks the install record of the Python packages the worker needs (a file read: no import,
see ``deps.py``) and installs them on request, usable at once (no restart).

Installing is two background tasks: :class:`PlanTask` asks pip what it would download (so the dialog
can state the size and the torch build before anything is fetched), then :class:`InstallTask` runs pip
with a progress bar in QGIS's task manager and every pip line in the *SoftCon* tab of the log panel.
"""
from __future__ import annotations

from pathlib import Path

from qgis import utils as qgis_utils
from qgis.core import Qgis, QgsApplication, QgsBlockingNetworkRequest, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtNetwork import QNetworkRequest
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QMessageBox, QPushButton, QTabWidget

from . import deps, install
from .provider import SoftConProvider

LOG_TAG = "SoftCon"
MENU = "&SoftCon"
ICON = Path(__file__).resolve().parent / "icon.svg"  # the toolbox, the menu and the Plugin Manager


def log(text: str, level=Qgis.Info) -> None:
    """A line in the SoftCon tab of the log panel (thread-safe: tasks call it from their thread)."""
    QgsMessageLog.logMessage(text, LOG_TAG, level)


def desktop():
    """QGIS's interface (``qgis.utils.iface``), read when needed: QGIS sets it after importing plugins, and it
    is None headless (``qgis_process``, tests without a window)."""
    return qgis_utils.iface


def remote_size(url: str) -> int | None:
    """Size of a remote file from a HEAD request through QGIS's network settings (proxy, certificates)."""
    request = QgsBlockingNetworkRequest()
    if request.head(QNetworkRequest(QUrl(url))) != QgsBlockingNetworkRequest.NoError:
        return None
    reply = request.reply()  # header names keep the server's case (HTTP/2: lower case); rawHeader() does not fold
    name = next((h for h in reply.rawHeaderList() if bytes(h).lower() == b"content-length"), None)
    length = bytes(reply.rawHeader(name)).decode() if name is not None else ""
    return int(length) if length.isdigit() else None


class PlanTask(QgsTask):
    """Asks pip what it would install for a torch build, and the download size (about 20 s)."""

    def __init__(self, build: str, on_done) -> None:
        super().__init__("SoftCon: finding the Python packages to download", QgsTask.CanCancel)
        self.build = build
        self.on_done = on_done
        self.plan: install.Plan | None = None
        self.output = ""

    def run(self) -> bool:
        self.setProgress(5)
        cpu_index = install.index_reachable()
        self.setProgress(20)
        self.plan, self.output = install.plan(self.build, size_of=remote_size, cpu_index=cpu_index)
        return self.plan is not None

    def finished(self, result: bool) -> None:
        self.on_done(self.plan, self.output)


class InstallTask(QgsTask):
    """Runs pip in QGIS's task manager: a progress bar, Cancel, and pip's log in the SoftCon log tab."""

    def __init__(self, requirements: list[str], on_done, build: str = "cpu", expected_packages: int = 50,
                 target=None, cpu_index: bool = True) -> None:
        super().__init__("SoftCon: installing Python packages", QgsTask.CanCancel)
        self.requirements = requirements
        self.on_done = on_done
        self.build = build
        self.expected = max(1, expected_packages)
        self.target = target if target is not None else deps.deps_dir()
        self.cpu_index = cpu_index
        self.verify_modules = deps.VERIFY_MODULES
        self.seen = 0
        self.ok = False
        self.output = ""

    def on_line(self, line: str) -> None:
        """Log pip's line and move the bar: packages collected (to 70 %), installing, checking imports."""
        log(line)
        if line.startswith(("Collecting ", "Processing ")):
            self.seen += 1
            self.setProgress(min(70.0, 70.0 * self.seen / self.expected))
        elif line.startswith("Installing collected packages"):
            self.setProgress(75)
        elif line.startswith("Checking that the packages import"):
            self.setProgress(90)

    def run(self) -> bool:
        self.ok, self.output = install.install(self.requirements, self.target, build=self.build,
                                               on_line=self.on_line, is_cancelled=self.isCanceled,
                                               cpu_index=self.cpu_index, verify_modules=self.verify_modules)
        return self.ok

    def finished(self, result: bool) -> None:
        self.on_done(result, self.output)


class SoftConPlugin:
    """Plugin entry point. ``qgis_process`` calls only ``initProcessing``; desktop QGIS calls ``initGui``."""

    def __init__(self) -> None:
        self.provider = None
        self.action = None
        self.task = None
        self.plan: install.Plan | None = None
        self.last_install: tuple[bool, str] | None = None  # (success, pip's output tail) of the last install
        self.bar_item = None  # our message bar item ("packages missing", then "installing"), removed when done

    # --- Processing -------------------------------------------------------------------------
    def initProcessing(self) -> None:
        if self.provider is None:
            provider = SoftConProvider()
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
            else:
                log("Could not register the SoftCon Processing provider.", Qgis.Critical)

    # --- desktop ----------------------------------------------------------------------------
    def initGui(self) -> None:
        self.initProcessing()
        iface = desktop()

        if iface is None:  # headless (qgis_process, tests without an interface)
            return
        self.action = QAction(QIcon(str(ICON)), "Install Python dependencies…", iface.mainWindow())
        self.action.triggered.connect(lambda: self.check_dependencies(interactive=True))
        iface.addPluginToMenu(MENU, self.action)
        self.check_dependencies(interactive=False)

    def unload(self) -> None:
        if self.provider is not None:
            if not QgsApplication.processingRegistry().removeProvider(self.provider):
                log("The SoftCon provider was already removed.")
            self.provider = None
        if self.action is not None:
            iface = desktop()

            if iface is not None:
                iface.removePluginMenu(MENU, self.action)
            self.action = None

    def check_dependencies(self, interactive: bool = False) -> str:
        """Whether the worker has its packages (:func:`.deps.problem`: cheap, on every start); if not, say so
        and offer to install them. Returns the problem, or ``""``."""
        problem = deps.problem()
        iface = desktop()
        if not problem:
            if interactive and iface is not None:
                iface.messageBar().pushMessage(LOG_TAG, f"SoftCon's Python packages are installed ("
                                                        f"{deps.python_executable()}).", Qgis.Success, 5)
            return problem
        log(f"SoftCon's algorithms need Python packages: {problem}\n{install.explain_fix()}", Qgis.Warning)
        if iface is None:
            return problem
        bar = iface.messageBar()
        widget = bar.createMessage(LOG_TAG, f"The algorithms need Python packages that are not installed yet "
                                            f"({problem} Details in the SoftCon log.)")
        button = QPushButton("Install…", widget)
        button.clicked.connect(lambda: self.start_install())
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.Warning)
        self.bar_item = widget
        if interactive:
            self.start_install()
        return problem

    # --- installing -------------------------------------------------------------------------
    def start_install(self, build: str | None = None) -> None:
        """Step 1: find what pip would download for ``build`` (default: CPU unless an NVIDIA GPU is present)."""
        if self.busy():
            iface = desktop()

            if iface is not None:
                iface.messageBar().pushMessage(LOG_TAG, "The install is already running (see the status bar).",
                                               Qgis.Info, 5)
            return
        build = build or install.default_build()
        log(f"Finding the packages to install (torch {build.upper()} build) with "
            f"{deps.python_executable()}...")
        self.task = PlanTask(build, lambda plan, output: self._planned(build, plan, output))
        QgsApplication.taskManager().addTask(self.task)

    def busy(self) -> bool:
        """A plan or install task of this plugin is queued or running."""
        try:
            return self.task is not None and self.task.status() in (QgsTask.Queued, QgsTask.OnHold, QgsTask.Running)
        except RuntimeError:  # the task manager deleted the finished task
            return False

    def _planned(self, build: str, plan: install.Plan | None, output: str) -> None:
        """Step 2: state the size and the build, and let the user choose; then install."""
        if plan is None:
            log(output, Qgis.Critical)
            if "pip is older than 22.2" in output:
                self.report_failure(output[output.index("This pip is older"):])
                return
            self.report_failure(
                f"pip cannot find the packages for the {build.upper()} build of torch {deps.TORCH_VERSION} "
                f"(no network, or the PyTorch index is unreachable); pip's output is in the SoftCon log. "
                f"Once the package index is reachable, press Install… again or run this one command:"
                f"\n\n{install.fix_command(build=build)}")
            return
        self.plan = plan
        log(f"Plan: {plan.summary()}")
        choice = self.ask(plan)
        if choice in ("cpu", "cuda") and choice != build:
            self.start_install(choice)
        elif choice == build:
            self.task = InstallTask(install.install_requirements(build), self._install_done, build,
                                    expected_packages=len(plan.packages), cpu_index=plan.cpu_index)
            QgsApplication.taskManager().addTask(self.task)
            self.show_installing()

    def ask(self, plan: install.Plan) -> str | None:
        """The confirmation dialog: returns the build to install (``plan.build``), the other build to plan
        instead, or None (cancel)."""
        iface = desktop()

        other = "cuda" if plan.build == "cpu" else "cpu"
        gpu = "An NVIDIA GPU was found." if install.has_cuda_gpu() else "No NVIDIA GPU was found."
        box = QMessageBox(iface.mainWindow() if iface is not None else None)
        box.setWindowTitle("SoftCon: install Python packages")
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(f"Install the Python packages SoftCon needs into\n{deps.deps_dir()}?\n\n{plan.summary()}\n\n"
                    f"{gpu} The CPU build of torch is the small download and runs everywhere; the CUDA "
                    f"build (about 2.5 GB plus 3 GB of NVIDIA libraries) runs on NVIDIA GPUs. "
                    f"No restart is needed.")
        install_button = box.addButton(f"Install ({plan.download_bytes / 1e6:,.0f} MB)",
                                       QMessageBox.ButtonRole.AcceptRole)
        switch = box.addButton(f"Use the {other.upper()} build instead…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(install_button)
        box.exec()
        clicked = box.clickedButton()
        return plan.build if clicked is install_button else other if clicked is switch else None

    def show_installing(self) -> None:
        """Say where the progress and pip's log are, and open the log on SoftCon's tab."""
        iface = desktop()

        if iface is None:
            return
        bar = iface.messageBar()
        if self.bar_item is not None:
            bar.popWidget(self.bar_item)
            self.bar_item = None
        self.bar_item = bar.pushWidget(bar.createMessage(
            LOG_TAG, "Installing the Python packages: progress in the status bar, pip's log in the SoftCon tab of "
                     "the Log Messages panel."), Qgis.Info)
        iface.openMessageLog()
        dock = iface.mainWindow().findChild(QDockWidget, "MessageLog")
        tabs = dock.findChild(QTabWidget) if dock is not None else None
        for i in range(tabs.count() if tabs is not None else 0):
            if tabs.tabText(i) == LOG_TAG:
                tabs.setCurrentIndex(i)

    def report_failure(self, text: str) -> None:
        iface = desktop()

        log(text, Qgis.Critical)
        if iface is not None:  # the first line in the bar, the whole text (with the fix) under "Show more"
            iface.messageBar().pushMessage(LOG_TAG, text.splitlines()[0], text, Qgis.Critical, 0)

    def _install_done(self, ok: bool, output: str) -> None:
        iface = desktop()

        self.last_install = (ok, output)
        log(output.splitlines()[-1] if output else "", Qgis.Info if ok else Qgis.Critical)
        if not ok:
            tail = output[output.find("pip finished, but"):] if "pip finished, but" in output else output[-1500:]
            self.report_failure(f"Installing SoftCon's Python packages failed.\n\n{tail}")
            return
        if iface is not None:
            if self.bar_item is not None:  # "installing": done
                iface.messageBar().popWidget(self.bar_item)
                self.bar_item = None
            iface.messageBar().pushMessage(
                LOG_TAG, "Python packages installed and checked: SoftCon's algorithms are ready (no restart "
                         "needed).", Qgis.Success, 0)
