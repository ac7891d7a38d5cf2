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

from .. import deps
from ..core.io.atomic import write_text_atomic
from ..core.models.registry import get_record, REGISTRY
from ..core.models.weights import cached_path, weights_path
from .base import SoftConAlgorithm, make_progress, require_core, run_core, tr

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
        require_core()
        from ..core.models.manage import register_weights  # torch: only once the dependencies are checked

        environment = deps.versions()
        feedback.pushInfo(environment)
        name, checkpoint = self.model_choice(parameters, context)
        action = self.parameterAsEnumString(parameters, self.ACTION, context) or "list"
        record = run_core(feedback, get_record, name)
        feedback.pushInfo(tr(f"Model: {record.name} ({record.arch}, {len(record.bands)} bands "
                             f"{','.join(record.bands)}, {record.input_size}px, {record.embed_dim}-d)"))

        if action == "download":
            path = run_core(feedback, weights_path, record, progress=make_progress(feedback))
            feedback.pushInfo(tr(f"Weights of {record.name}: {path}"))
        elif action == "register":
            if not checkpoint:
                raise QgsProcessingException(tr("Action 'register' needs a checkpoint file: set 'Checkpoint file'."))
            target, warnings = run_core(feedback, register_weights, checkpoint, record.name)
            for warning in warnings:
                feedback.reportError(tr(warning), fatalError=False)
            feedback.pushInfo(tr(f"Registered {checkpoint} as the weights of {record.name}: {target}"))

        available = cached_path(record)
        rows = []
        for r in REGISTRY.values():
            local = cached_path(r)
            rows.append((r, local))
            feedback.pushInfo(f"{r.name:24s} {r.arch:26s} {len(r.bands):2d} bands {r.input_size:4d}px  "
                              f"{'weights: ' + str(local) if local else 'not downloaded'}")
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        results = {
            self.WEIGHTS: str(available) if available else "",
            self.AVAILABLE: available is not None,
            self.MODELS: ",".join(REGISTRY),
            self.ENVIRONMENT: environment,
        }
        if out:
            _write_report(out, rows, record.name)
            results[self.OUTPUT] = out
        return results


def _write_report(path: str, rows, selected: str) -> None:
    esc = html.escape
    body = [
        "<html><head><meta charset='utf-8'><title>SoftCon models</title></head><body>",
        "<h2>SoftCon models</h2><table border='1' cellpadding='4' style='border-collapse:collapse'>",
        "<tr><th>name</th><th>architecture</th><th>bands</th><th>input</th><th>dim</th><th>licence</th>"
        "<th>weights on this computer</th><th>source</th></tr>",
    ]
    for r, local in rows:
        style = " style='font-weight:bold'" if r.name == selected else ""
        body.append(
            f"<tr{style}><td>{esc(r.name)}</td><td>{esc(r.arch)}</td><td>{esc(','.join(r.bands))}</td>"
            f"<td>{r.input_size}px</td><td>{r.embed_dim}</td><td>{esc(r.license)}</td>"
            f"<td>{esc(str(local)) if local else 'no'}</td><td>{esc(r.url or r.hf_repo or 'shipped')}</td></tr>")
    body.append("</table><p>" + esc(rows[0][0].citation if rows else "") + "</p></body></html>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(path), "\n".join(body))
