"""Where a run's processes start: one module per way of reaching hosts, each a ``Backend``
(``launcher.backends.base``): ``local`` (this host), ``ssh`` (``--hostfile``/``--hosts``),
``slurm`` (inside an allocation).

This is where a launch chooses its backend (``--launcher``, or automatically), and the only
place outside the backends' own modules that names them. A backend's module is imported only
when it is chosen: a local launch never loads paramiko.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launcher.backends.base import Backend
    from launcher.config import LaunchConfig

#: ``--launcher`` name -> "module:class" of its backend.
BACKENDS = {"local": "launcher.backends.local:LocalBackend",
            "ssh": "launcher.backends.ssh:SSHBackend",
            "slurm": "launcher.backends.slurm:SlurmBackend"}


def chosen(config: LaunchConfig, env: Mapping[str, str], has_hosts: bool) -> str:
    """The backend of a launch: ssh when there is a host list (``--hostfile``/``--hosts``, or
    the hostfile of the run a ``--resume`` continues); slurm with ``--launcher slurm``, or
    inside an allocation when nothing names this host's devices (``LaunchConfig.slurm``); else
    local. (``LaunchConfig`` refuses a ``--launcher`` that contradicts the other flags.)"""
    if has_hosts:
        return "ssh"
    return "slurm" if config.slurm(env) else "local"


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name`` (its module imported now)."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
