"""SoftCon QGIS plugin: a thin Processing shell over the bundled ``core`` package.

``core`` is reached as the subpackage ``softcon_qgis.core`` (a symlink to the repository's ``core/``
in a checkout, a real folder in the plugin zip), so it never collides with another plugin's top-level
``core``. Nothing heavy is imported here: QGIS imports this module at start-up.
"""


def classFactory(iface):  # QGIS plugin API name; iface is taken from qgis.utils where needed
    """Called by QGIS to create the plugin (desktop and ``qgis_process``)."""
    # not at the top: QGIS imports this module at start-up, and the plugin's own packages must be on the path
    # before anything of the plugin is imported
    from .deps import add_deps_to_path, isolate_bundled_libraries

    add_deps_to_path()  # packages the plugin installed itself, if any
    isolate_bundled_libraries()  # rasterio/pyproj wheels keep their own GDAL/PROJ (see deps.py)
    from .plugin import SoftConPlugin  # (as above)

    return SoftConPlugin()
