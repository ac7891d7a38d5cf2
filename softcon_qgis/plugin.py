"""The plugin object QGIS creates through ``classFactory``: registers the Processing provider and,
in desktop QGIS, checks the Python dependencies and offers to install the missing ones."""
from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from . import deps

LOG_TAG = "SoftCon"
MENU = "&SoftCon"


class InstallTask(QgsTask):
    """Runs pip in QGIS's task manager so the interface stays responsive during a ~1 GB download."""

    def __init__(self, requirements: list[str], on_done) -> None:
        super().__init__("SoftCon: installing Python dependencies", QgsTask.CanCancel)
        self.requirements = requirements
        self.on_done = on_done
        self.ok = False
        self.output = ""

    def run(self) -> bool:
        self.ok, self.output = deps.install(self.requirements)
        return self.ok

    def finished(self, result: bool) -> None:
        self.on_done(result, self.output)


class SoftConPlugin:
    """Plugin entry point. ``qgis_process`` calls only ``initProcessing``; desktop QGIS calls ``initGui``."""

    def __init__(self) -> None:
        self.provider = None
        self.action = None
        self.task = None

    # --- Processing -------------------------------------------------------------------------
    def initProcessing(self) -> None:
        from .provider import SoftConProvider

        if self.provider is None:
            provider = SoftConProvider()
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
            else:
                QgsMessageLog.logMessage("Could not register the SoftCon Processing provider.", LOG_TAG, Qgis.Critical)

    # --- desktop ----------------------------------------------------------------------------
    def initGui(self) -> None:
        self.initProcessing()
        from qgis.utils import iface

        if iface is None:  # headless (qgis_process, tests without an interface)
            return
        self.action = QAction("Check / install Python dependencies", iface.mainWindow())
        self.action.triggered.connect(lambda: self.check_dependencies(interactive=True))
        iface.addPluginToMenu(MENU, self.action)
        self.check_dependencies(interactive=False)

    def unload(self) -> None:
        if self.provider is not None:
            if not QgsApplication.processingRegistry().removeProvider(self.provider):
                QgsMessageLog.logMessage("The SoftCon provider was already removed.", LOG_TAG, Qgis.Info)
            self.provider = None
        if self.action is not None:
            from qgis.utils import iface

            if iface is not None:
                iface.removePluginMenu(MENU, self.action)
            self.action = None

    def check_dependencies(self, interactive: bool = False) -> list[deps.Missing]:
        """Import torch, timm, rasterio...; tell the user what is missing and offer to install it."""
        missing = deps.check()
        from qgis.utils import iface

        if not missing:
            if interactive and iface is not None:
                iface.messageBar().pushMessage(LOG_TAG, "All Python dependencies import.", Qgis.Success, 5)
            return missing
        text = deps.explain(missing)
        QgsMessageLog.logMessage(text, LOG_TAG, Qgis.Warning)
        if iface is None:
            return missing
        bar = iface.messageBar()
        widget = bar.createMessage(
            LOG_TAG, f"Missing Python packages: {', '.join(m.module for m in missing)}. "
                     "The algorithms need them (details in the SoftCon log).")
        button = QPushButton("Install…", widget)
        button.clicked.connect(lambda: self.offer_install(missing))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.Warning)
        if interactive:
            self.offer_install(missing)
        return missing

    def offer_install(self, missing: list[deps.Missing]) -> None:
        from qgis.utils import iface

        parent = iface.mainWindow() if iface is not None else None
        answer = QMessageBox.question(
            parent, "SoftCon: install Python dependencies",
            deps.explain(missing) + "\n\nInstall them now with pip (option 1)?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return
        self.task = InstallTask([m.requirement for m in missing], self._install_done)
        QgsApplication.taskManager().addTask(self.task)

    def _install_done(self, ok: bool, output: str) -> None:
        from qgis.utils import iface

        QgsMessageLog.logMessage(output, LOG_TAG, Qgis.Info if ok else Qgis.Critical)
        if iface is None:
            return
        if ok:
            still = deps.check()
            msg = ("Dependencies installed. Restart QGIS to use SoftCon." if still else
                   "Dependencies installed and importable.")
            iface.messageBar().pushMessage(LOG_TAG, msg, Qgis.Success, 0)
        else:
            iface.messageBar().pushMessage(
                LOG_TAG, "pip failed; see the SoftCon log for its output.", Qgis.Critical, 0)
