"""Each Ascend device's IP (the address of its RoCE NIC), for the rank table.

The IPs come from the ``address_<device_id>=<ip>`` lines of ``/etc/hccn.conf`` or from the
``ipaddr:<ip>`` line printed by ``hccn_tool -i <n> -ip -g``. The ``parse_*`` functions and
``device_ips`` are pure; ``read_hccn_conf`` reads the file, ``query_hccn_tool`` runs the tool
and ``gather_device_ips`` does both.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cluster.devices import format_ids
from cluster.errors import PlanError
from cluster.ranktable.table import PLACEHOLDER_IP, is_ip

DEFAULT_HCCN_CONF = "/etc/hccn.conf"
HCCN_TOOL = "hccn_tool"

_ADDRESS = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")
_IPADDR = re.compile(r"^\s*ipaddr\s*:\s*(\S+)\s*$", re.MULTILINE)


def parse_hccn_conf(text: str, source: str = DEFAULT_HCCN_CONF) -> dict[int, str]:
    """Map device id -> device IP from the ``address_<n>=<ip>`` lines of an hccn.conf text.

    Other lines (netmask_<n>, comments, blank lines) are ignored; a malformed address is an error
    that names the file and line.
    """
    ips: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _ADDRESS.match(line)
        if not match:
            continue
        device, ip = int(match.group(1)), match.group(2)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise PlanError(f"{source} line {number}: {ip!r} is not an IP address (expected "
                            f"address_{device}=<ip>); fix the file or pass another with "
                            f"--hccn-conf") from None
        ips[device] = ip
    return ips


def read_hccn_conf(path: str | Path = DEFAULT_HCCN_CONF) -> dict[int, str] | None:
    """Device IPs from the hccn.conf at ``path``; None when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}; pass a readable file with "
                        f"--hccn-conf") from None
    return parse_hccn_conf(text, str(path))


def parse_hccn_tool_output(text: str) -> str | None:
    """The device IP in the output of ``hccn_tool -i <n> -ip -g`` (its ``ipaddr:<ip>`` line).

    None when there is no such line or it does not hold an IP address (the tool prints an
    error text instead when the device has no address).
    """
    match = _IPADDR.search(text)
    if match and is_ip(match.group(1)):
        return match.group(1)
    return None


def query_hccn_tool(device_ids: Sequence[int], tool: str = HCCN_TOOL,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                    timeout: float = 10.0) -> dict[int, str] | None:
    """Ask ``hccn_tool -i <n> -ip -g`` for each device's IP; None when the tool is not installed.

    Devices for which the tool fails or prints no address are left out of the result (the
    caller reports them). ``run`` is ``subprocess.run`` (replaceable in tests).
    """
    exe = shutil.which(tool)
    if exe is None:
        return None
    ips: dict[int, str] = {}
    for device in device_ids:
        try:
            out = run([exe, "-i", str(device), "-ip", "-g"], capture_output=True, text=True,
                      timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            continue
        ip = parse_hccn_tool_output(out.stdout) if out.returncode == 0 else None
        if ip:
            ips[device] = ip
    return ips


def gather_device_ips(device_ids: Sequence[int], hccn_conf: str | None = None,
                      tool: str = HCCN_TOOL) -> tuple[dict[int, str], str]:
    """Device IPs for ``device_ids`` and a note saying where they came from.

    ``hccn_conf`` given: that file only. Otherwise ``hccn_tool`` when installed, and
    ``/etc/hccn.conf`` for whatever it did not answer (as ModelZoo's hccl_tools.py does).
    A device whose IP is found nowhere is an error naming the sources tried.
    """
    if hccn_conf is not None:
        conf = read_hccn_conf(hccn_conf)
        if conf is None:
            raise PlanError(f"--hccn-conf {hccn_conf}: no such file; pass the hccn.conf that "
                            f"lists address_<n>=<ip> for each device")
        ips, tried = dict(conf), [hccn_conf]
    else:
        ips, tried = {}, []
        from_tool = query_hccn_tool(device_ids, tool)
        if from_tool is not None:
            ips.update(from_tool)
            tried.append(f"{tool} -i <n> -ip -g")
        if any(d not in ips for d in device_ids):
            conf = read_hccn_conf(DEFAULT_HCCN_CONF)
            tried.append(DEFAULT_HCCN_CONF + ("" if conf is not None else " (missing)"))
            for device, ip in (conf or {}).items():
                ips.setdefault(device, ip)
    missing = [d for d in device_ids if d not in ips]
    if missing:
        raise PlanError(f"no IP address for device(s) {format_ids(missing)} in "
                        f"{' or '.join(tried) or 'hccn_tool or ' + DEFAULT_HCCN_CONF}; configure the "
                        f"device NICs (hccn_tool -i <n> -ip -s address <ip> netmask <mask>) or pass "
                        f"an hccn.conf with address_<n>=<ip> lines via --hccn-conf FILE")
    return {d: ips[d] for d in device_ids}, " and ".join(tried)


def device_ips(device_ids: Sequence[int], conf: Mapping[int, str] | None, conf_path: str,
               allow_placeholder: bool) -> tuple[dict[int, str], list[str]]:
    """Look up each device's IP in a parsed hccn.conf; return (ips, warnings).

    A missing file or address is an error, or (``allow_placeholder``, for dry runs) a warning
    and ``PLACEHOLDER_IP``.
    """
    if conf is None:
        problem = f"{conf_path} does not exist, so the device IPs for the rank table are unknown"
        if not allow_placeholder:
            raise PlanError(f"{problem}. On an Ascend host it is written by hccn_tool; pass its "
                            f"location with --hccn-conf FILE.")
        return ({d: PLACEHOLDER_IP for d in device_ids},
                [f"{problem}; the rank table shows {PLACEHOLDER_IP} instead (dry run only)"])
    missing = [d for d in device_ids if d not in conf]
    if missing and not allow_placeholder:
        raise PlanError(f"{conf_path} has no address_<n> line for device(s) "
                        f"{', '.join(map(str, missing))}; add them (hccn_tool -i <n> -ip -g shows "
                        f"the address) or pass another file with --hccn-conf.")
    warnings = ([f"{conf_path} has no address for device(s) {', '.join(map(str, missing))}; "
                 f"the rank table shows {PLACEHOLDER_IP} instead (dry run only)"] if missing else [])
    return {d: conf.get(d, PLACEHOLDER_IP) for d in device_ids}, warnings
