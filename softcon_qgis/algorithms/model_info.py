"""Model info and download: list the registry, fetch published weights, or register a local checkpoint."""
from __future__ import annotations

import html
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
)

from .base import SoftConAlgorithm, run_worker, tr

ACTIONS = ("list", "download", "register")


class ModelInfoAlgorithm(SoftConAlgorithm):
    ACTION = "ACTION"
    OUTPUT = "OUTPUT"
    WEIGHTS = "WEIGHTS"
    AVAILABLE = "AVAILABLE"
    MODELS = "MODELS"
    ENVIRONMENT = "ENVIRONMENT"

    _group = "Models"
    _help = (
        "Lists the SoftCon models this plugin knows (architecture, bands, input size, licence, and whether "
        "their weights are on this computer), and makes a model's weights available.\n\n"
        "Action:\n"
        "- list: only report (nothing is downloaded).\n"
        "- download: fetch the published weights of the chosen model into the SoftCon cache, with progress "
        "(resumes an interrupted download; the file's sha256 is checked).\n"
        "- register: check that the given checkpoint file loads into the chosen model (strictly: every "
        "weight must match) and copy it into the cache, so every algorithm finds it without a checkpoint "
        "parameter. Use this on computers without internet access.\n\n"
        "The report is an HTML table; the outputs WEIGHTS (path of the weights file, empty if none) and "
        "AVAILABLE make the algorithm usable as a first step in the graphical modeler."
    )

    def name(self) -> str:
        return "modelinfo"

    def displayName(self) -> str:
        return tr("Model info and download")

    def initAlgorithm(self, config=None) -> None:
        self.add_model_parameters()
        self.param(QgsProcessingParameterEnum(
            self.ACTION, tr("Action"), options=list(ACTIONS), defaultValue="list", usesStaticStrings=True))
        self.param(QgsProcessingParameterFileDestination(
            self.OUTPUT, tr("Model report"), fileFilter="HTML files (*.html)", optional=True,
            createByDefault=True))
        self.output(QgsProcessingOutputString(self.WEIGHTS, tr("Weights file")))
        self.output(QgsProcessingOutputBoolean(self.AVAILABLE, tr("Weights available")))
        self.output(QgsProcessingOutputString(self.MODELS, tr("Registered models")))
        self.output(QgsProcessingOutputString(self.ENVIRONMENT, tr("Python packages in use")))

    def processAlgorithm(self, parameters, context, feedback):
        name, checkpoint = self.model_choice(parameters, context)
        action = self.parameterAsEnumString(parameters, self.ACTION, context) or "list"
        if action == "register" and not checkpoint:
            raise QgsProcessingException(tr("Action 'register' needs a checkpoint file: set 'Checkpoint file'."))
        args = {"list": ["list"], "download": ["download", name], "register": ["register", name, checkpoint]}[action]
        result = run_worker(feedback, "models", args)
        feedback.pushInfo(result["environment"])
        for warning in result.get("warnings", []):
            feedback.reportError(tr(warning), fatalError=False)
        if action != "list":
            feedback.pushInfo(tr(f"Weights of {name}: {result['weights']}"))
        models = result["models"]
        for m in models:
            feedback.pushInfo(f"{m['name']:24s} {m['arch']:26s} {len(m['bands']):2d} bands {m['input_size']:4d}px  "
                              f"{'weights: ' + m['weights'] if m['weights'] else 'not downloaded'}")
        chosen = next(m for m in models if m["name"] == name)
        results = {
            self.WEIGHTS: chosen["weights"] or "",
            self.AVAILABLE: chosen["weights"] is not None,
            self.MODELS: ",".join(m["name"] for m in models),
            self.ENVIRONMENT: result["environment"],
        }
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if out:
            _write_report(out, models, name)
            results[self.OUTPUT] = out
        return results


def _write_report(path: str, models: list[dict], selected: str) -> None:
    esc = html.escape
    body = [
        "<html><head><meta charset='utf-8'><title>SoftCon models</title></head><body>",
        "<h2>SoftCon models</h2><table border='1' cellpadding='4' style='border-collapse:collapse'>",
        "<tr><th>name</th><th>architecture</th><th>bands</th><th>input</th><th>dim</th><th>licence</th>"
        "<th>weights on this computer</th><th>source</th></tr>",
    ]
    for m in models:
        style = " style='font-weight:bold'" if m["name"] == selected else ""
        body.append(
            f"<tr{style}><td>{esc(m['name'])}</td><td>{esc(m['arch'])}</td><td>{esc(','.join(m['bands']))}</td>"
            f"<td>{m['input_size']}px</td><td>{m['dim']}</td><td>{esc(m['license'])}</td>"
            f"<td>{esc(m['weights'] or 'no')}</td><td>{esc(m['source'])}</td></tr>")
    body.append("</table><p>" + esc(models[0]["citation"] if models else "") + "</p></body></html>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(body), encoding="utf-8")
