"""Hosts of a multi-node launch: hostfiles, ``--hosts``, and the environment sent to them.

Pure functions over text (no SSH, no files beyond reading the one named), each with a test.

Hostfile (DeepSpeed / MPI style), one host per line, ``#`` starts a comment::

    node1 slots=8                          # 8 devices: 0-7
    node2 slots=4 devices=4-7 user=alice port=2222 python=/opt/py/bin/python workdir=/srv/wrn

``slots`` is the number of devices (workers) on that host; ``devices`` names them (CPU devices
are logical, so ``slots`` alone is enough). ``user``/``port`` override ``~/.ssh/config``;
``python`` is the interpreter there (default: the launcher's own path); ``workdir`` is the
project checkout there, put on PYTHONPATH (default: the launcher's own checkout; none when the
launcher is installed, so each host imports its installed wrn-launch). ``--hosts a:8,b:8`` is
the short form.
The first host is the master: it holds rank 0 and runs the scheduler.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cluster.devices import DeviceRequest, parse_devices, whole_number
from cluster.errors import PlanError

#: Keys a hostfile line may carry after the host name.
HOSTFILE_KEYS = ("slots", "devices", "user", "port", "python", "workdir")
#: Variables forwarded from the launcher's environment to remote workers when set there.
ENV_ALLOW = ("LANG", "LC_ALL", "TZ", "ONEDNN_MAX_CPU_ISA", "MS_NODE_TIMEOUT", "MS_TOPO_TIMEOUT",
             "HCCL_CONNECT_TIMEOUT", "HCCL_EXEC_TIMEOUT", "HCCL_IF_IP", "HCCL_SOCKET_IFNAME",
             "GLOO_SOCKET_IFNAME", "ASCEND_HOME_PATH")
#: Parts of a variable name that mark its value as secret (masked in run.json).
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASS", "CREDENTIAL")
MASK = "***"

_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class HostSpec:
    """One host to run on: name (as in logs and ssh), device request, SSH and path overrides.

    ``where`` says where it was written (``hosts.txt:3`` or ``--hosts``) for error messages.
    """

    name: str
    slots: int
    devices: tuple[int, ...] | None = None
    user: str | None = None
    port: int | None = None
    python: str | None = None
    workdir: str | None = None
    where: str = "--hosts"

    def __post_init__(self) -> None:
        if not _HOST.match(self.name):
            raise PlanError(f"{self.where}: {self.name!r} is not a host name (letters, digits, "
                            f"'.', '-', '_'; it also names the host's log files)")
        if self.slots < 1:
            raise PlanError(f"{self.where}: host {self.name}: slots must be 1 or more")
        if self.devices is not None and len(self.devices) != self.slots:
            raise PlanError(f"{self.where}: host {self.name}: slots={self.slots} but devices= names "
                            f"{len(self.devices)} device(s); make them agree or drop slots")
        if self.port is not None and not 0 < self.port < 65536:
            raise PlanError(f"{self.where}: host {self.name}: port={self.port} is not a TCP port")

    def device_request(self) -> DeviceRequest:
        """The ``--devices`` equivalent for this host: its ids, else a count of ``slots``."""
        if self.devices is not None:
            return DeviceRequest(",".join(map(str, self.devices)), ids=self.devices)
        return DeviceRequest(str(self.slots), count=self.slots)


def _slots(value: str, where: str, host: str) -> int:
    count = whole_number(value)
    if count is None or count < 1:
        raise PlanError(f"{where}: host {host}: bad slot count {value!r}; write slots=N with N a "
                        f"whole number of devices, 1 or more (e.g. slots=8)")
    return count


def parse_hostfile(text: str, source: str = "hostfile") -> list[HostSpec]:
    """Parse hostfile text; ``source`` (the file name) prefixes every error with its line."""
    hosts: list[HostSpec] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        name, *pairs = line.split()
        if name in seen:
            raise PlanError(f"{where}: duplicate host {name} (already on line {seen[name]}); list "
                            f"each host once and give it slots=N for several devices")
        values: dict[str, str] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not value:
                raise PlanError(f"{where}: {pair!r} is not key=value; write e.g. "
                                f"'{name} slots=8'")
            if key not in HOSTFILE_KEYS:
                raise PlanError(f"{where}: unknown key {key!r}; a host line takes "
                                f"{', '.join(k + '=' for k in HOSTFILE_KEYS)}")
            if key in values:
                raise PlanError(f"{where}: {key}= is given twice for host {name}")
            values[key] = value
        devices = None
        if "devices" in values:
            text = values["devices"]
            try:  # in a hostfile, devices= always lists ids: "3" is device 3, not 3 devices
                devices = parse_devices(text + "," if whole_number(text) is not None else text).ids
            except PlanError as exc:
                raise PlanError(f"{where}: host {name}: devices={text}: {exc}") from None
        slots = _slots(values["slots"], where, name) if "slots" in values else \
            (len(devices) if devices is not None else 1)
        port = values.get("port")
        if port is not None and whole_number(port) is None:
            raise PlanError(f"{where}: host {name}: port={port!r} is not a number; write the SSH "
                            f"port in digits, e.g. port=2222")
        hosts.append(HostSpec(name, slots, devices, values.get("user"),
                              whole_number(port) if port is not None else None, values.get("python"),
                              values.get("workdir"), where))
        seen[name] = number
    if not hosts:
        raise PlanError(f"{source}: no hosts (every line is empty or a comment); add lines like "
                        f"'node1 slots=8'")
    return hosts


def read_hostfile(path: str) -> list[HostSpec]:
    """Read and parse the hostfile at ``path`` (``--hostfile``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise PlanError(f"--hostfile {path}: cannot read it ({exc.strerror}); pass an existing "
                        f"file with lines like 'node1 slots=8'") from None
    return parse_hostfile(text, path)


def format_hostfile(specs: Sequence[HostSpec]) -> str:
    """Hostfile text that ``parse_hostfile`` reads back as ``specs`` (one line per host)."""
    lines = []
    for spec in specs:
        parts = [spec.name, f"slots={spec.slots}"]
        if spec.devices is not None:
            parts.append("devices=" + ",".join(map(str, spec.devices)))
        parts += [f"{key}={getattr(spec, key)}" for key in ("user", "port", "python", "workdir")
                  if getattr(spec, key) is not None]
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def parse_hosts_flag(text: str) -> list[HostSpec]:
    """Parse ``--hosts a:8,b:8`` (``:N`` is the slot count, default 1)."""
    hosts: list[HostSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, colon, count = part.partition(":")
        where = f"--hosts {text}"
        if any(h.name == name for h in hosts):
            raise PlanError(f"{where}: duplicate host {name}; list each host once with :N devices")
        slots = _slots(count, where, name) if colon else 1
        hosts.append(HostSpec(name, slots, where=where))
    if not hosts:
        raise PlanError(f"--hosts {text!r} names no host; write e.g. --hosts node1:8,node2:8")
    return hosts


def _bad_assignment(where: str, item: str, example: str) -> PlanError:
    """The error for a malformed ``NAME=VALUE``: it names the variable, never shows the value."""
    key, eq, _value = item.partition("=")
    what = f"variable name {key.strip()!r}" if eq and key.strip() else \
        ("an assignment without a name" if eq else "text without '='")
    return PlanError(f"{where}: {what} is not NAME=VALUE with NAME made of letters, digits and "
                     f"'_', not starting with a digit (the value is not repeated here); write "
                     f"e.g. {example}")


def parse_env_assignments(items: Sequence[str], source: str = "--env") -> dict[str, str]:
    """``["K=V", ...]`` -> dict; ``source`` names the flag in errors."""
    env: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _ENV_NAME.match(key):
            raise _bad_assignment(source, item, "--env ONEDNN_MAX_CPU_ISA=AVX2: expected NAME=VALUE")
        env[key] = value
    return env


_COMMENT = re.compile(r"\s#")


def _env_value(text: str, where: str, key: str) -> str:
    """The value after ``NAME=`` as a shell (and dotenv) reads it: 'single' quotes literal,
    "double" quotes with backslash escapes of ``" \\ $ `````, unquoted text up to `` #``."""
    text = text.strip()
    quote = text[:1]
    if quote not in ("'", '"'):
        match = _COMMENT.search(text)
        return (text[:match.start()] if match else text).strip()
    out: list[str] = []
    i, closed = 1, False
    while i < len(text):
        char = text[i]
        if quote == '"' and char == "\\" and text[i + 1:i + 2] in ('"', "\\", "$", "`"):
            out.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            closed = True
            break
        out.append(char)
        i += 1
    after = text[i + 1:].strip()
    if not closed or (after and not after.startswith("#")):
        problem = "has no closing quote" if not closed else "has text after its closing quote"
        raise PlanError(f"{where}: the value of {key} {problem} (the value is not repeated here); "
                        f"quote the whole value, e.g. {key}='a b', or leave the quotes out")
    return "".join(out)


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """An env file: ``NAME=VALUE`` lines (optional ``export``, ``#`` comments); values are read
    as a shell or dotenv reads them (quotes removed, `` # comment`` after a value dropped)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        where = f"{source}:{number}:"
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not _ENV_NAME.match(key):
            raise _bad_assignment(where, line, "NCCL_DEBUG=WARN: expected NAME=VALUE")
        env[key] = _env_value(value, where, key)
    return env


#: Names whose values came from ``--env-file`` in this process: secret wherever they appear.
def is_secret_name(name: str, secret_names: Iterable[str] = ()) -> bool:
    """True when ``name`` looks like it holds a secret (KEY, TOKEN, SECRET, PASS...), or is one
    of ``secret_names`` (a launch's names whose values came from ``--env-file``)."""
    upper = name.upper()
    return name in secret_names or any(marker in upper for marker in SECRET_MARKERS)


#: ``scheme://user:password@`` or ``scheme://token@`` inside a value.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@:\s]*)"
                              r"(?::(?P<password>[^/@\s]*))?@")


def mask_url_credentials(text: str) -> str:
    """``text`` with the password (or the lone token) of every URL in it replaced by ``***``."""
    def masked(match: re.Match) -> str:
        if match.group("password") is not None:
            return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
        return f"{match.group('scheme')}{MASK}@"
    return _URL_CREDENTIALS.sub(masked, text)


def mask_env(env: Mapping[str, str], secret_names: Iterable[str] = ()) -> dict[str, str]:
    """A copy of ``env`` with the values of secret names (see ``is_secret_name``) replaced by
    ``***`` and credentials inside URLs masked in the others."""
    secret_names = frozenset(secret_names)
    return {k: (MASK if is_secret_name(k, secret_names) else mask_url_credentials(v) if isinstance(v, str) else v)
            for k, v in env.items()}


def forwarded_env(environ: Mapping[str, str], allow: Sequence[str] = ENV_ALLOW) -> dict[str, str]:
    """The allow-listed variables of ``environ`` that are set (sent to remote workers)."""
    return {k: environ[k] for k in allow if k in environ}


def mask_command(argv: Sequence[str]) -> list[str]:
    """A command line with the values of secret-looking ``--env NAME=VALUE`` masked, and
    credentials inside URLs masked in every argument."""
    out: list[str] = []
    after_env = False
    for arg in argv:
        prefix = ""
        if arg.startswith("--env="):
            prefix, arg = "--env=", arg[len("--env="):]
        if after_env or prefix:
            key, eq, _value = arg.partition("=")
            if eq and is_secret_name(key):
                arg = f"{key}={MASK}"
        out.append(prefix + mask_url_credentials(arg))
        after_env = arg == "--env" and not prefix
    return out


def parse_host_selection(text: str, flag: str) -> dict[str, tuple[int, ...] | None]:
    """``--include``/``--exclude`` (DeepSpeed style): ``HOST[:DEVS][@HOST[:DEVS]...]`` ->
    host -> device ids (None: the whole host). ``DEVS`` is ``0,1``, ``0-3`` or a mix."""
    chosen: dict[str, tuple[int, ...] | None] = {}
    example = f"{flag} node1@node2:0,1 (hosts joined by '@', a host's devices after ':')"
    if not isinstance(text, str) or not text.strip():
        raise PlanError(f"{flag} is empty; name hosts as in the hostfile, e.g. {example}")
    for item in text.split("@"):
        host, sep, devs = item.strip().partition(":")
        if not _HOST.match(host):
            raise PlanError(f"{flag} {text!r}: {host!r} is not a host name; e.g. {example}")
        if host in chosen:
            raise PlanError(f"{flag} {text!r}: host {host} is named twice; name it once with all "
                            f"its devices, e.g. {host}:0,1")
        chosen[host] = _selected_ids(devs, f"{flag} {text!r}: host {host}") if sep else None
    return chosen


def _selected_ids(text: str, where: str) -> tuple[int, ...]:
    """``0,1`` / ``0-3`` / a mix -> device ids (each once)."""
    ids: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        low, high = whole_number(first), whole_number(last) if dash else whole_number(first)
        if low is None or high is None or high < low or high - low > 4096:
            raise PlanError(f"{where}: {part.strip()!r} is not a device id or range; list ids "
                            f"after ':' such as 0,1 or 0-3, or drop ':' for the whole host")
        ids += [d for d in range(low, high + 1) if d not in ids]
    return tuple(ids)


def select_hosts(specs: Sequence[HostSpec], include: str | None = None,
                 exclude: str | None = None) -> list[HostSpec]:
    """The hosts and devices of ``specs`` that ``--include`` keeps or ``--exclude`` leaves;
    a host with devices taken away keeps the rest as ``devices=``."""
    if include is None and exclude is None:
        return list(specs)
    flag, text = ("--include", include) if include is not None else ("--exclude", exclude)
    chosen = parse_host_selection(text, flag)
    by_name = {s.name: s for s in specs}
    unknown = [h for h in chosen if h not in by_name]
    if unknown:
        raise PlanError(f"{flag} {text!r}: host(s) {', '.join(unknown)} are not in the host list "
                        f"({', '.join(by_name) or 'none'}); name hosts as the hostfile does")
    out: list[HostSpec] = []
    for spec in specs:
        have = spec.devices if spec.devices is not None else tuple(range(spec.slots))
        named = chosen.get(spec.name, ())
        if named:
            missing = [d for d in named if d not in have]
            if missing:
                raise PlanError(f"{flag} {text!r}: host {spec.name} has no device(s) "
                                f"{','.join(map(str, missing))} in the host list (it has "
                                f"{','.join(map(str, have))})")
        if include is not None:
            keep = () if spec.name not in chosen else (named or have)
        else:
            keep = () if spec.name in chosen and named is None else \
                tuple(d for d in have if d not in (named or ()))
        keep = tuple(d for d in have if d in keep)
        if keep == have:
            out.append(spec)
        elif keep:
            out.append(dataclasses.replace(spec, slots=len(keep), devices=keep))
    if not out:
        raise PlanError(f"{flag} {text!r} leaves no host to run on; keep at least one device")
    return out
