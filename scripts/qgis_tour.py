"""Drive the real QGIS desktop as an analyst would (``qgis --code scripts/qgis_tour.py``, under Xvfb).

Run by ``scripts/try_install.sh`` and ``scripts/screenshots.sh``; not a test (it needs a display and,
for ``install``, the network). ``SOFTCON_TOUR`` picks the tour, ``SOFTCON_TOUR_OUT`` the folder for the
screenshots and ``tour.json`` (what happened, with times):

- ``install``: a fresh profile with the plugin just installed from the zip: press the message bar's
  *Install…*, accept the dialog that states the download, wait for pip, and record the outcome.
- ``screens``: the demo scene and training points loaded; the toolbox, the Classify and Model info
  dialogs, a Classify run pressed in the dialog, and the map after it.
- ``assess``: the demo scene and a class map (``SOFTCON_TOUR_MAP``); *Create validation sample* run from its
  dialog, one point labelled in its form through the value map, the labels of ``SOFTCON_TOUR_LABELS`` (a JSON
  object sample_id -> class, labelled by eye) entered and saved, *Assess accuracy and estimate areas* run from
  its dialog, and its report.

Each step waits for what it needs (a widget, a finished task) by polling; the tour quits QGIS at the end.
"""
import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer, QUrl
from qgis.PyQt.QtWidgets import (
    QApplication, QComboBox, QDockWidget, QLineEdit, QMessageBox, QPushButton, QTextBrowser, QTextEdit,
)
from qgis.utils import iface, plugins

OUT = Path(os.environ.get("SOFTCON_TOUR_OUT", "/tmp/softcon-tour"))
MODE = os.environ.get("SOFTCON_TOUR", "screens")
OUT.mkdir(parents=True, exist_ok=True)
STATE = {"mode": MODE, "t0": time.time(), "events": []}
_timers = []  # keep the polling timers alive
DIALOG_AT = (440, 150)  # where the algorithm dialogs go (x, y), beside the Layers panel


def note(what: str, **extra) -> None:
    STATE["events"].append({"t": round(time.time() - STATE["t0"], 1), "what": what, **extra})
    (OUT / "tour.json").write_text(json.dumps(STATE, indent=1, default=str))


def shot(name: str) -> None:
    """The whole X screen, as the user sees it (what ``import -window root`` grabs)."""
    QApplication.primaryScreen().grabWindow(0).save(str(OUT / f"{name}.png"))
    note(f"screenshot {name}.png")


def finish(ok: bool, **extra) -> None:
    note("finished", ok=ok, **extra)
    QgsProject.instance().clear()
    QTimer.singleShot(1000, QApplication.instance().quit)


def poll(check, then, every_ms: int = 1000, timeout_s: float = 3600, what: str = "") -> None:
    """Call ``check()`` every ``every_ms`` until it returns something truthy, then ``then(value)``."""
    start = time.time()
    timer = QTimer()

    def tick():
        try:
            value = check()
            if value:
                timer.stop()
                then(value)
            elif time.time() - start > timeout_s:
                timer.stop()
                finish(False, error=f"timed out waiting for {what}")
        except Exception:
            timer.stop()
            finish(False, error=traceback.format_exc())

    timer.timeout.connect(tick)
    timer.start(every_ms)
    _timers.append(timer)


def plugin():
    return plugins.get("softcon_qgis")


# ---------------------------------------------------------------------------------------- install
def install_tour() -> None:
    def install_button():
        return next((b for b in iface.messageBar().findChildren(QPushButton) if b.text() == "Install…"), None)

    def press_install(button):
        note("message bar offers Install…")
        shot("install_1_message_bar")
        button.click()
        poll(confirm_box, accept, what="the confirmation dialog")

    def confirm_box():
        box = QApplication.activeModalWidget()
        return box if isinstance(box, QMessageBox) and box.windowTitle().startswith("SoftCon") else None

    def accept(box):
        note("confirmation dialog", text=box.text())
        shot("install_2_confirm")
        box.defaultButton().click()
        STATE["install_started"] = time.time()
        poll(install_done, report, what="the install task")

    def install_done():
        task = plugin().task
        if type(task).__name__ == "InstallTask" and not STATE.get("progress_shot"):
            try:
                if task.progress() > 30:
                    STATE["progress_shot"] = True
                    shot("install_3_progress")
            except RuntimeError:  # the task manager deletes a finished task
                pass
        return plugin().last_install

    def report(result):
        ok, output = result
        QTimer.singleShot(1500, lambda: (shot("install_4_done"), finish(
            ok, install_s=round(time.time() - STATE["install_started"], 1), output_tail=output[-3000:],
            plan=plugin().plan.summary() if plugin().plan else None)))

    poll(install_button, press_install, timeout_s=120, what="the Install… button")


# ---------------------------------------------------------------------------------------- screens
def screens_tour() -> None:
    from processing import createAlgorithmDialog
    from qgis.core import QgsContrastEnhancement, QgsRasterMinMaxOrigin

    from softcon_qgis import deps, install
    from softcon_qgis.core.classify.demo import DEMO_POINTS, demo_raster

    missing = deps.check()
    if missing:
        finish(False, error=install.explain(missing))
        return
    raster = QgsRasterLayer(str(demo_raster()), "S2 L1C demo scene")
    renderer = raster.renderer()
    renderer.setRedBand(4), renderer.setGreenBand(3), renderer.setBlueBand(2)
    raster.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    points = QgsVectorLayer(str(DEMO_POINTS), "demo_points", "ogr")
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)
    assert len(QgsProject.instance().addMapLayers([raster, points])) == 2
    for dock in iface.mainWindow().findChildren(QDockWidget):  # the same panels on every run: the profile
        dock.setVisible(dock.objectName() in ("Layers", "ProcessingToolbox"))  # keeps the last run's layout
    layers_panel = iface.mainWindow().findChild(QDockWidget, "Layers")
    if layers_panel is not None:  # wide enough for "<input> - class probabilities"
        iface.mainWindow().resizeDocks([layers_panel], [340], Qt.Orientation.Horizontal)
    iface.mapCanvas().setExtent(raster.extent())
    iface.mapCanvas().refresh()

    toolbox = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    toolbox.setVisible(True)
    toolbox.raise_()
    search = toolbox.findChild(QLineEdit)
    if search is not None:
        search.setText("SoftCon")

    def step_toolbox():
        shot("toolbox")
        dlg = createAlgorithmDialog("softcon:modelinfo", {})
        dlg.show()
        dlg.setGeometry(*DIALOG_AT, 1150, 700)  # after show(): the dialog restores its last geometry when shown
        QTimer.singleShot(2500, lambda: step_model_info(dlg))

    def step_model_info(dlg):
        models = dlg.mainWidget().wrappers["MODEL"].widget
        models.showPopup()  # the list of models by name, on disk or with their download size
        QTimer.singleShot(1000, lambda: step_model_list(dlg, models))

    def step_model_list(dlg, models):
        shot("dialog_model_info")
        models.hidePopup()
        dlg.close()
        if search is not None:
            search.setText("")
        cls = createAlgorithmDialog("softcon:classify", {"INPUT": raster.id(), "TRAINING": points.id()})
        cls.show()
        cls.setGeometry(*DIALOG_AT, 1150, 840)
        QTimer.singleShot(3000, lambda: step_classify(cls))

    def step_classify(dlg):
        shot("dialog_classify")
        STATE["classify_started"] = time.time()
        dlg.runAlgorithm()

        def loaded():
            return dlg if any(lyr.name().endswith(" - classes") for lyr in QgsProject.instance().mapLayers().values()) \
                else None

        poll(loaded, lambda d: QTimer.singleShot(2000, lambda: step_log(d)), timeout_s=1800,
             what="the Classify outputs")

    def step_log(dlg):
        note("classify finished", seconds=round(time.time() - STATE["classify_started"], 1),
             layers=[lyr.name() for lyr in QgsProject.instance().mapLayers().values()])
        dlg.setGeometry(DIALOG_AT[0], 0, dlg.width(), 1000)  # the whole height: the comparison and the result
        for log in dlg.findChildren(QTextEdit, "txtLog"):  # scroll to the last windows, the method comparison
            cursor = log.document().find("Spatially blocked")
            if not cursor.isNull():
                (OUT / "classify_log.txt").write_text(log.toPlainText())
                cursor.clearSelection()  # no highlight in the screenshot
                log.setTextCursor(cursor)
                bar = log.verticalScrollBar()
                bar.setValue(bar.value() + log.cursorRect().top() - 4 * log.fontMetrics().lineSpacing())
        QTimer.singleShot(1000, lambda: step_log_shot(dlg))

    def step_log_shot(dlg):
        shot("dialog_classify_log")
        dlg.close()
        toolbox.setVisible(False)
        root = QgsProject.instance().layerTreeRoot()
        for lyr in QgsProject.instance().mapLayers().values():  # the class map over the scene and the points
            if lyr is not raster and lyr is not points:
                root.findLayer(lyr.id()).setItemVisibilityChecked(lyr.name().endswith(" - classes"))
            root.findLayer(lyr.id()).setExpanded(lyr.name().endswith(" - classes"))  # legend: the class names
        for dock in iface.mainWindow().findChildren(QDockWidget):  # the map as large as the screen allows
            if dock.objectName() != "Layers":
                dock.setVisible(False)
        QTimer.singleShot(1000, step_map)

    def step_map():
        iface.mapCanvas().setExtent(raster.extent())
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(4000, lambda: (shot("map_classified"), finish(True)))

    QTimer.singleShot(4000, step_toolbox)


# ---------------------------------------------------------------------------------------- assess
def assess_tour() -> None:
    from processing import createAlgorithmDialog
    from qgis.core import QgsContrastEnhancement, QgsRasterMinMaxOrigin, QgsRectangle

    from softcon_qgis.core.assess.classmap import read_class_map
    from softcon_qgis.core.classify.demo import demo_raster

    given = json.loads(Path(os.environ["SOFTCON_TOUR_LABELS"]).read_text())
    labels = {int(k): v for k, v in given["labels"].items()}
    form_id = int(given.get("form", min(labels)))  # the point labelled in its form, on screen
    cmap = read_class_map(os.environ["SOFTCON_TOUR_MAP"])
    if given.get("map_counts") and dict(zip(cmap.names, cmap.counts)) != given["map_counts"]:
        finish(False, error="the labels are for another map (its pixel counts differ): a new map draws other "
                            "points; label them again")
        return
    size = int(os.environ.get("SOFTCON_TOUR_SIZE", "400"))
    raster = QgsRasterLayer(str(demo_raster()), "S2 L1C demo scene")
    renderer = raster.renderer()
    renderer.setRedBand(4), renderer.setGreenBand(3), renderer.setBlueBand(2)
    raster.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    classes = QgsRasterLayer(os.environ["SOFTCON_TOUR_MAP"], "demo - classes")  # styled by its classes.qml
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)
    assert len(QgsProject.instance().addMapLayers([raster, classes])) == 2
    for dock in iface.mainWindow().findChildren(QDockWidget):
        dock.setVisible(dock.objectName() == "Layers")
    layers_panel = iface.mainWindow().findChild(QDockWidget, "Layers")
    if layers_panel is not None:
        iface.mainWindow().resizeDocks([layers_panel], [340], Qt.Orientation.Horizontal)
    iface.mapCanvas().setExtent(raster.extent())
    iface.mapCanvas().refresh()
    state = {}

    def step_sample_dialog():
        params = {"INPUT": classes.id(), "SIZE": size, "OUTPUT": str(OUT / "validation_sample.gpkg")}
        dlg = createAlgorithmDialog("softcon:validationsample", params)
        dlg.show()
        dlg.setGeometry(*DIALOG_AT, 1100, 640)
        QTimer.singleShot(2500, lambda: (shot("assess_1_dialog_sample"), dlg.runAlgorithm(), poll(
            sample_layer, lambda lyr: QTimer.singleShot(2000, lambda: step_sample_map(dlg, lyr)), timeout_s=600,
            what="the validation sample")))

    def sample_layer():
        return next((lyr for lyr in QgsProject.instance().mapLayers().values()
                     if lyr.name().endswith("validation sample")), None)

    def step_sample_map(dlg, layer):
        note("sample loaded", points=layer.featureCount(), log=dlg.findChild(QTextEdit, "txtLog").toPlainText()[-600:])
        dlg.close()
        QgsProject.instance().layerTreeRoot().findLayer(classes.id()).setItemVisibilityChecked(False)
        iface.mapCanvas().refreshAllLayers()
        state["layer"] = layer
        QTimer.singleShot(3000, lambda: (shot("assess_2_sample"), step_form()))

    def step_form():
        layer = state["layer"]
        assert layer.startEditing()
        first = next(f for f in layer.getFeatures() if f["sample_id"] == form_id)
        p = first.geometry().asPoint()
        iface.mapCanvas().setExtent(QgsRectangle(p.x() - 1500, p.y() - 950, p.x() + 1500, p.y() + 950))
        iface.mapCanvas().refreshAllLayers()
        form = iface.getFeatureForm(layer, first)
        form.show()
        form.setGeometry(1000, 120, 520, 360)
        layer.selectByIds([first.id()])  # the point being labelled, in the selection colour
        combo = form.findChild(QComboBox, "reference")  # the value map of the class names
        state.update(form=form, combo=combo, first=first)
        QTimer.singleShot(2500, lambda: (combo.showPopup(), QTimer.singleShot(1500, step_pick)))

    def step_pick():
        shot("assess_3_label_value_map")
        combo, form = state["combo"], state["form"]
        combo.hidePopup()
        combo.setCurrentIndex(combo.findText(labels[state["first"]["sample_id"]]))
        form.accept()
        layer = state["layer"]
        idx = layer.fields().indexOf("reference")
        by_id = {f["sample_id"]: f.id() for f in layer.getFeatures()}
        for sid, label in labels.items():
            if sid != state["first"]["sample_id"] and not layer.changeAttributeValue(by_id[sid], idx, label):
                raise RuntimeError(f"could not label point {sid}")
        ok = layer.commitChanges()
        layer.removeSelection()
        saved = layer.getFeature(state["first"].id())["reference"]
        note("labels saved", ok=ok, labelled=len(labels), first_in_form=saved)
        if saved != labels[state["first"]["sample_id"]]:
            finish(False, error=f"the label picked in the form was not saved ({saved})")
            return
        iface.mapCanvas().setExtent(raster.extent())
        iface.mapCanvas().refreshAllLayers()
        QTimer.singleShot(3000, lambda: (shot("assess_4_labelled"), step_assess()))

    def step_assess():
        folder = OUT / "accuracy"
        dlg = createAlgorithmDialog("softcon:assessaccuracy", {"INPUT": classes.id(), "SAMPLE": state["layer"].id(),
                                                               "OUTPUT_FOLDER": str(folder)})
        dlg.show()
        dlg.setGeometry(*DIALOG_AT, 1100, 640)
        dlg.runAlgorithm()
        poll(lambda: (folder / "accuracy.html").exists() and dlg,
             lambda d: QTimer.singleShot(2500, lambda: step_assess_log(d, folder)), timeout_s=600,
             what="the accuracy report")

    def step_assess_log(dlg, folder):
        dlg.setGeometry(DIALOG_AT[0], 0, 1150, 1000)
        log = dlg.findChild(QTextEdit, "txtLog")
        (OUT / "assess_log.txt").write_text(log.toPlainText())
        cursor = log.document().find("overall accuracy")
        if not cursor.isNull():
            cursor.clearSelection()
            log.setTextCursor(cursor)
        QTimer.singleShot(1000, lambda: (shot("assess_5_log"), dlg.close(), step_report(folder)))

    def step_report(folder):
        view = QTextBrowser()
        view.setWindowTitle("accuracy.html")
        view.setSource(QUrl.fromLocalFile(str(folder / "accuracy.html")))
        view.setGeometry(340, 0, 1260, 1000)
        view.show()
        state["view"] = view
        QTimer.singleShot(2000, lambda: (shot("assess_6_report"), view.close(), finish(True)))

    QTimer.singleShot(4000, step_sample_dialog)


iface.mainWindow().setGeometry(0, 0, 1600, 1000)  # no window manager under Xvfb: fill the screen
QgsApplication.messageLog().messageReceived.connect(  # the SoftCon log tab, kept in a file
    lambda msg, tag, level: tag == "SoftCon" and open(OUT / "softcon_log.txt", "a").write(msg + "\n"))
note("started", qgis_settings=str(QgsApplication.qgisSettingsDirPath()))
QTimer.singleShot(3000, {"install": install_tour, "assess": assess_tour}.get(MODE, screens_tour))
