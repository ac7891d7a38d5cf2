"""Set-up self-check: print versions; fail loudly on a CUDA torch under CPU constraints or a second Qt."""
import importlib.metadata as md
import os
import sys

import numpy
import rasterio
import torch
from qgis.core import Qgis

from core.models.timm_compat import timm, TORCHVISION_OPS_REAL


def main() -> int:
    print(f"python {sys.version.split()[0]}  torch {torch.__version__}  numpy {numpy.__version__}  "
          f"timm {timm.__version__} (torchvision ops {'real' if TORCHVISION_OPS_REAL else 'declared'})")
    print(f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})  QGIS {Qgis.QGIS_VERSION}")
    errors = []
    cpu = "cpu" in os.environ.get("CONSTRAINTS", "constraints-cpu.txt")
    if cpu and (torch.version.cuda or "+cpu" not in torch.__version__):
        errors.append(f"a CUDA torch ({torch.__version__}) slipped into a CPU install")
    nvidia = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-")]
    if cpu and nvidia:
        errors.append(f"CUDA wheels installed: {', '.join(nvidia[:5])}")
    qt = [d.metadata["Name"] for d in md.distributions()
          if d.metadata["Name"].lower() in {"pyqt5", "pyqt6", "pyside2", "pyside6", "opencv-python", "pyqt5-qt5"}]
    if qt:
        errors.append(f"a second Qt in the venv ({', '.join(qt)}); QGIS brings its own PyQt5: pip uninstall them")
    if not numpy.__version__.startswith("1."):
        errors.append("numpy 2 installed; Debian 12's GDAL/QGIS bindings need numpy 1")
    for e in errors:
        print("SELF-CHECK FAILED:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
