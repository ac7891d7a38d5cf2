"""SoftCon QGIS plugin: a thin Processing shell over the bundled ``core`` package.

``core`` is reached as the subpackage ``softcon_qgis.core`` (a symlink to the repository's ``core/``
in a checkout, a real folder in the plugin zip), so it never collides with another plugin's top-level
``core``. Nothing heavy is imported here, nor anywhere in QGIS's process: the work runs in a worker
process (``worker.py``).
"""


def classFactory(iface):  # QGIS plugin API name; iface is taken from qgis.utils where needed
    """Called by QGIS to create the plugin (desktop and ``qgis_process``)."""
    from .plugin import SoftConPlugin  # not at the top: QGIS imports this package before it calls classFactory

    return SoftConPlugin()
