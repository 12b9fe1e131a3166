"""Which accelerator backend a host has, and which of its devices a launch uses.

Pure functions over small inputs (a ``--devices`` string, a directory listing, the output of
``nvidia-smi -L``) so that every rule is testable without an accelerator:

* ``--devices 8`` is a *count* (the first 8 devices); ``--devices 0-3,6`` is a *list* of device
  ids (ranges and single ids, comma separated). A single id is written ``3,`` or ``3-3``.
* Ascend devices are the ``/dev/davinci<N>`` nodes, GPUs the ``/dev/nvidia<N>`` nodes or the
  ``GPU <N>:`` lines of ``nvidia-smi -L``. CPU devices are logical: any count is allowed.
* A GPU is only usable when the installed MindSpore can drive one: MindSpore's releases after
  2.3 are built for CPU and Ascend, and the pinned 2.10 from PyPI does not load its GPU plugin.
  ``gpu_problem()`` asks that MindSpore (in a child process, as the workers would) and says why
  not; auto-detection never picks a GPU it cannot use.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cluster.errors import PlanError

#: Backends in auto-detection order.
BACKENDS = ("ascend", "gpu", "cpu")
#: MindSpore's ``device_target`` for each backend.
DEVICE_TARGET = {"ascend": "Ascend", "gpu": "GPU", "cpu": "CPU"}
#: How Ascend workers meet (``--ascend-startup``): MindSpore's dynamic cluster (a scheduler and
#: MS_WORKER processes, as msrun starts them), or the HCCL rank table alone (MindSpore < 2.4).
ASCEND_STARTUPS = ("dynamic", "ranktable")
#: Upper bound on device ids and counts, to catch typos such as ``--devices 80000``.
MAX_DEVICES = 4096

_RANGE = re.compile(r"([0-9]{1,9})(?:-([0-9]{1,9}))?\Z")
_WHOLE = re.compile(r"[0-9]{1,9}\Z")


def whole_number(text: str) -> int | None:
    """``text`` as an int when it is ASCII digits only (at most 9 of them), else None; unlike
    ``str.isdigit`` + ``int`` it refuses superscripts, other scripts' digits and huge numbers."""
    return int(text) if isinstance(text, str) and _WHOLE.match(text) else None


@dataclass(frozen=True)
class DeviceRequest:
    """What the user asked for with ``--devices``: a count, or explicit device ids."""

    text: str
    count: int | None = None
    ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.ids is None):
            raise PlanError(f"--devices {self.text!r}: give either a count or a list of ids")
        if self.count is not None and not 0 < self.count <= MAX_DEVICES:
            raise PlanError(f"--devices {self.text!r}: the count must be between 1 and {MAX_DEVICES}")
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            raise PlanError(f"--devices {self.text!r}: device ids are repeated")

    def resolve(self, available: Sequence[int] | None, backend: str) -> tuple[int, ...]:
        """Return the device ids to use, checked against ``available`` (None: logical devices).

        A count takes the first ``count`` available ids; explicit ids must all exist.
        """
        name = backend_label(backend)
        if available is None:
            return tuple(range(self.count)) if self.count is not None else self.ids
        have = sorted(set(available))
        where = (f"this host has {len(have)} {name} device(s): {format_ids(have)}" if have
                 else f"this host has no {name} devices")
        if self.count is not None:
            if self.count > len(have):
                raise PlanError(f"--devices {self.text}: asked for {self.count} {name} device(s) but "
                                f"{where}. Ask for at most {len(have)}, or pick another backend with "
                                f"--backend.")
            return tuple(have[: self.count])
        missing = [i for i in self.ids if i not in have]
        if missing:
            raise PlanError(f"--devices {self.text}: unknown {name} device id(s) "
                            f"{format_ids(missing)}; {where}. Choose ids from that list.")
        return self.ids


def parse_devices(text: str | int) -> DeviceRequest:
    """Parse a ``--devices`` value: ``"8"`` (count), ``"0-3,6"`` / ``"3,"`` (ids)."""
    raw = str(text).strip()
    example = "use a count such as --devices 8, or device ids such as --devices 0-3,6"
    if not raw:
        raise PlanError(f"--devices is empty; {example}")
    count = whole_number(raw)
    if count is not None:
        if count == 0:
            raise PlanError(f"--devices 0: at least one device is needed; {example}")
        return DeviceRequest(raw, count=count)
    ids: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        match = _RANGE.match(part)
        if not match:
            raise PlanError(f"--devices {raw!r}: {part!r} is neither a device id nor a range "
                            f"like 0-3; {example}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise PlanError(f"--devices {raw!r}: range {part!r} runs backwards; write {hi}-{lo}")
        if hi >= MAX_DEVICES:
            raise PlanError(f"--devices {raw!r}: device id {hi} is too large (ids are below "
                            f"{MAX_DEVICES}); {example}")
        ids.extend(range(lo, hi + 1))
    if not ids:
        raise PlanError(f"--devices {raw!r} names no device; {example}")
    return DeviceRequest(raw, ids=tuple(ids))


def format_ids(ids: Iterable[int]) -> str:
    """Compact form of device ids: ``[0, 1, 2, 3, 6]`` -> ``"0-3,6"``."""
    values = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def backend_label(backend: str) -> str:
    """Human name of a backend: ``"ascend"`` -> ``"Ascend"``."""
    return DEVICE_TARGET.get(backend, backend)


def numbered_nodes(names: Iterable[str], prefix: str) -> list[int]:
    """Ids N of the names that are exactly ``<prefix><N>`` (``davinci0`` yes, ``davinci_manager`` no)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    return sorted(int(m.group(1)) for m in map(pattern.match, names) if m)


def parse_nvidia_smi(text: str) -> list[int]:
    """GPU ids from ``nvidia-smi -L`` output (``GPU 0: NVIDIA H100 (UUID: ...)``)."""
    return sorted({int(m.group(1)) for m in re.finditer(r"^GPU (\d+):", text, re.MULTILINE)})


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _nvidia_smi_ids() -> list[int]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


def list_devices(backend: str, dev_dir: str = "/dev", use_nvidia_smi: bool = True) -> list[int] | None:
    """Device ids of ``backend`` on this host; None for ``cpu`` (logical devices).

    ``dev_dir`` is where device nodes are looked for (a fixture directory in tests);
    ``nvidia-smi -L`` is asked only when ``use_nvidia_smi`` and no ``/dev/nvidia<N>`` exists.
    """
    if backend == "cpu":
        return None
    if backend == "ascend":
        return numbered_nodes(_listdir(dev_dir), "davinci")
    if backend == "gpu":
        ids = numbered_nodes(_listdir(dev_dir), "nvidia")
        if not ids and use_nvidia_smi:
            ids = _nvidia_smi_ids()
        return ids
    raise PlanError(f"unknown backend {backend!r}; use one of auto, {', '.join(BACKENDS)}")


#: Run by ``gpu_problem`` in the workers' interpreter: MindSpore's version and whether its GPU
#: plugin loaded (decided when ``mindspore`` is imported).
_GPU_PROBE = ("import json, mindspore\n"
              "from mindspore import device_context\n"
              "print(json.dumps({'version': mindspore.__version__, "
              "'gpu': bool(device_context.gpu.is_available())}))\n")


def gpu_problem(python: str | None = None, timeout: float = 120.0) -> str | None:
    """None when the MindSpore that ``python`` (default: this interpreter) imports can use a
    GPU; otherwise why not, as the end of a sentence (``"the installed MindSpore 2.10.0 ..."``)."""
    python = python or sys.executable
    env = {**os.environ, "GLOG_v": "3"}
    try:
        out = subprocess.run([python, "-c", _GPU_PROBE], capture_output=True, text=True,
                             timeout=timeout, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"asking MindSpore whether it can use a GPU failed ({exc})"
    lines = out.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if out.returncode == 0 and lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"MindSpore could not be imported to ask whether it can use a GPU ({last})"
    if answer.get("gpu"):
        return None
    return (f"the installed MindSpore {answer.get('version')} cannot use a GPU: its GPU "
            f"plugin does not load (mindspore.device_context.gpu.is_available() is False). "
            f"MindSpore's releases after 2.3 support CPU and Ascend only")


def detect_backend(dev_dir: str = "/dev", use_nvidia_smi: bool = True,
                   gpu_check: Callable[[], str | None] = gpu_problem) -> str:
    """The backend this host offers: ``ascend`` if any /dev/davinci<N>, then ``gpu`` when
    there are NVIDIA devices and ``gpu_check()`` finds MindSpore able to use them, else ``cpu``."""
    if list_devices("ascend", dev_dir, use_nvidia_smi):
        return "ascend"
    if list_devices("gpu", dev_dir, use_nvidia_smi) and gpu_check() is None:
        return "gpu"
    return "cpu"
