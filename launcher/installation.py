"""Which wrn-launch this is: its version, the folder its packages load from, whether that is an
installed distribution or a source folder, and the versions the pre-flight compares between hosts.

The check that the import names do not clash with other code runs before any of the project's
packages is imported, so it stays in the entry script (``wrn_launch.clashes``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

#: The distribution's name (``pip install wrn-launch``, ``importlib.metadata``).
DIST_NAME = "wrn-launch"


def installation() -> dict[str, Any]:
    """Which wrn-launch this is: ``version`` (the code's own), ``location`` (the folder holding
    its packages) and ``installed`` (True: the packages are the installed distribution's files;
    False: a source folder, such as a checkout on PYTHONPATH or an editable install)."""
    import wrn

    location = os.path.dirname(os.path.dirname(os.path.realpath(wrn.__file__)))
    return {"version": wrn.__version__, "location": location,
            "installed": _installed_file() == os.path.realpath(wrn.__file__)}


def _installed_file() -> str | None:
    """``wrn/__init__.py`` as installed by pip (listed in the RECORD of the first ``wrn-launch``
    distribution on the path); None when there is none, or it is not such an installation (an
    editable install, or the egg-info a build leaves in a source folder)."""
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return None
    record = dist.read_text("RECORD") or ""
    if not any(line.startswith("wrn/__init__.py,") for line in record.splitlines()):
        return None
    return os.path.realpath(str(dist.locate_file("wrn/__init__.py")))


def versions() -> dict[str, str | None]:
    """Python, MindSpore (from its package metadata; MindSpore is not imported) and wrn-launch
    (the running code's own version, whether installed or from a source folder)."""
    import wrn

    try:
        mindspore = importlib.metadata.version("mindspore")
    except importlib.metadata.PackageNotFoundError:
        mindspore = None
    return {"python": platform.python_version(), "mindspore": mindspore,
            "wrn-launch": wrn.__version__}
