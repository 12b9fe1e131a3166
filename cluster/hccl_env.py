"""The HCCL environment of Ascend workers: ``HCCL_CONNECT_TIMEOUT`` and ``HCCL_EXEC_TIMEOUT``,
from the flags or the caller's environment, checked against HCCL's ranges."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cluster.errors import PlanError
from cluster.ranktable.table import as_uint

#: HCCL's timeouts: variable -> (smallest, largest, HCCL's default), in seconds.
HCCL_TIMEOUTS = {
    "HCCL_CONNECT_TIMEOUT": (120, 7200, 120),
    # Atlas A2 accepts 0 (never) .. 2^31-1; Atlas training series (910) accepts 1..17340 and
    # rounds down to a multiple of 68 (see hccl_timeout_env's warnings).
    "HCCL_EXEC_TIMEOUT": (0, 2147483647, 1836),
}
HCCL_EXEC_TIMEOUT_910_MAX = 17340


def hccl_timeout_env(connect: int | None = None, execute: int | None = None,
                     env: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``HCCL_CONNECT_TIMEOUT`` / ``HCCL_EXEC_TIMEOUT`` for Ascend workers, and warnings.

    Each comes from its flag (``--hccl-connect-timeout`` / ``--hccl-exec-timeout``), else from
    ``env`` (the caller's environment) when set there, else HCCL's default; all are checked
    against HCCL's ranges, so a bad value fails before anything starts.
    """
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    warnings: list[str] = []
    for var, flag, value in (("HCCL_CONNECT_TIMEOUT", "--hccl-connect-timeout", connect),
                             ("HCCL_EXEC_TIMEOUT", "--hccl-exec-timeout", execute)):
        lo, hi, default = HCCL_TIMEOUTS[var]
        where = flag
        if value is None and env.get(var, "").strip():
            raw = env[var].strip()
            where = f"the environment variable {var}"
            value = as_uint(raw)
            if value is None:
                raise PlanError(f"{where}={raw!r} is not a whole number of seconds; set it to a "
                                f"value in {lo}-{hi} or unset it (HCCL's default is {default})")
        if value is None:
            value = default
        if not lo <= value <= hi:
            raise PlanError(f"{where} {value}: HCCL accepts {lo}-{hi} seconds (default "
                            f"{default}); choose a value in that range")
        if var == "HCCL_EXEC_TIMEOUT" and (value == 0 or value > HCCL_EXEC_TIMEOUT_910_MAX):
            warnings.append(f"{var}={value}: only Atlas A2/A3 accept this; Atlas training series "
                            f"(910) devices need 1-{HCCL_EXEC_TIMEOUT_910_MAX}")
        out[var] = str(value)
    return out, warnings
