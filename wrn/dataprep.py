"""From the archive people download to a ``data_path``: ``wrn-launch data prepare``.

RP2K comes as one zip (``rp2k_dataset.zip``, folders ``all/train/<class>/`` and
``all/test/<class>/``) whose Chinese folder names may be stored in GBK/CP936 without the zip's
UTF-8 flag. ``prepare(source, out)``:

1. a zip is extracted into ``out``; each member's name is decoded from its raw bytes: UTF-8
   when the member has the UTF-8 flag (bit 11), else one encoding for all the others, the
   first of UTF-8, GBK (CP936), GB18030 that decodes every one of them (or the one asked for),
   and the choice is reported. Before anything is written every name is checked
   (``safe_member_path``: no absolute names, no ``..``, no control characters) and the sizes
   the archive declares are checked against the free space and for zip-bomb ratios. Each file
   is written to a temporary name and renamed, so an interrupted run leaves whole files only
   and the next run extracts just what is missing; ``__MACOSX/`` resource forks are skipped;
2. a folder is taken as it is, and names mangled by an earlier naive unzip (bytes that are not
   UTF-8, or GBK read as CP437/Latin-1) are renamed in place to what they should be
   (``repair_names``); a name that cannot be repaired is reported;
3. the folder holding ``train/`` and ``test/`` is found at any depth (``find_data_root``);
4. every image is verified (``wrn.splits.scan_split``, on the usable cores): bad ones are counted
   and listed, stray files (not an image in a class folder) too;
5. ``classes.json`` (the class index) and ``prepare.json`` (this report) are written into that
   folder (the report also into ``out``), and its path is the ``data_path`` to use.

A second run finds ``prepare.json`` matching the source and the tree (``wrn.dataindex.tree_stamp``)
and does nothing. Bad input raises ``PrepareError`` (one paragraph; the CLI exits 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wrn.classindex import save_class_index
from wrn.config import ConfigError
from wrn.datapath import IMAGE_EXTENSIONS, DataError
from wrn.fileio import expand_user, write_json_atomic
from wrn.scan import scan_workers
from wrn.splits import scan_split

#: Encodings tried, in order, for member names without the UTF-8 flag.
NAME_ENCODINGS = ("utf-8", "gbk", "gb18030")
#: The report written into the data folder; also the marker that makes a second run a no-op.
REPORT_NAME = "prepare.json"
#: Zip-bomb guards: no member may expand more than MAX_RATIO times once it is over
#: RATIO_FLOOR bytes; no archive may have more than MAX_MEMBERS entries.
MAX_RATIO = 200
RATIO_FLOOR = 64 << 20
MAX_MEMBERS = 5_000_000
#: Free space kept on the target file system beyond what the archive declares.
SPACE_MARGIN = 64 << 20
#: How deep ``find_data_root`` looks for the folder holding train/ and test/.
MAX_DEPTH = 6
_CHUNK = 1 << 20
_UTF8_FLAG = 0x800
_DRIVE = re.compile(r"^[A-Za-z]:")


class PrepareError(ConfigError):
    """The source cannot be prepared as it is; ``str()`` names it and says what to do."""


@dataclass(frozen=True)
class Member:
    """One archive entry to extract: its decoded relative path and declared size."""

    info: zipfile.ZipInfo
    path: str
    size: int
    is_dir: bool


@dataclass
class Prepared:
    """What ``prepare`` did; ``data_path`` is the folder to train on."""

    data_path: Path
    classes: list[str]
    train: int
    test: int
    bad: list[tuple[str, str]] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    encoding: str | None = None
    extracted: int = 0
    skipped_existing: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)
    unrepaired: list[tuple[str, str]] = field(default_factory=list)
    already: bool = False

    def to_dict(self) -> dict:
        return {"data_path": str(self.data_path), "classes": len(self.classes), "train": self.train,
                "test": self.test, "bad_images": [[p, why] for p, why in self.bad],
                "stray_files": self.stray, "name_encoding": self.encoding, "extracted": self.extracted,
                "renamed": [[a, b] for a, b in self.renamed],
                "unrepaired": [[a, b] for a, b in self.unrepaired]}


# --------------------------------------------------------------------------- names


def raw_name(info: zipfile.ZipInfo) -> bytes:
    """The bytes of a member's name as stored in the archive (zipfile decodes names without
    the UTF-8 flag as CP437, which maps every byte, so encoding back gives them exactly)."""
    if info.flag_bits & _UTF8_FLAG:
        return info.orig_filename.encode("utf-8", "surrogateescape")
    return info.orig_filename.encode("cp437")


def choose_encoding(raws: Iterable[bytes], forced: str | None = None) -> str:
    """The encoding for names without the UTF-8 flag: ``forced``, else the first of
    ``NAME_ENCODINGS`` that decodes all of ``raws`` (``"ascii"`` when they all are).
    ``PrepareError`` naming an example when none does."""
    raws = list(raws)
    candidates = (forced,) if forced else NAME_ENCODINGS
    if not forced and all(r.isascii() for r in raws):
        return "ascii"
    for enc in candidates:
        bad = next((r for r in raws if not _decodes(r, enc)), None)
        if bad is None:
            return enc
    example = bad.decode("utf-8", "backslashreplace")
    tried = forced or ", ".join(NAME_ENCODINGS)
    raise PrepareError(f"archive member names are not valid in {tried} (e.g. {example!r}); pass "
                       f"the archive's name encoding with --encoding (e.g. big5, shift_jis, cp437)")


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def decode_name(raw: bytes, utf8_flag: bool, encoding: str) -> str:
    """A member name as text: UTF-8 when flagged, else ``encoding``; backslashes (Windows
    separators; decoded first, so a GBK byte 0x5C inside a character is not one) become ``/``."""
    text = raw.decode("utf-8" if utf8_flag else encoding, "surrogateescape")
    return text.replace("\\", "/")


def safe_member_path(name: str) -> str:
    """``name`` as a clean relative path (``a/b/c``; ``""`` for the archive's root), or
    ``PrepareError`` when extracting it could write outside the target folder or make a name
    no file system should hold: absolute names, drive letters, ``..``, NUL and control
    characters, names that are not valid Unicode."""
    if not isinstance(name, str):
        raise PrepareError(f"archive member name {name!r} is not text")
    shown = ascii(name) if len(name) < 200 else ascii(name[:200]) + "..."
    if name.startswith("/") or _DRIVE.match(name):
        raise PrepareError(f"archive member {shown} has an absolute name; refusing to extract an "
                           f"archive that writes outside its folder (repack it with relative names)")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise PrepareError(f"archive member {shown} has a control character or undecodable "
                           f"bytes in its name; pass --encoding, or repack the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PrepareError(f"archive member {shown} has '..' in its name; refusing to extract an "
                           f"archive that writes outside its folder")
    if any(len(p.encode("utf-8")) > 255 for p in parts):
        raise PrepareError(f"archive member {shown} has a name part longer than 255 bytes")
    return "/".join(parts)


def read_members(archive: zipfile.ZipFile, encoding: str | None = None) -> tuple[list[Member], str]:
    """The archive's entries with decoded, checked names, and the encoding used for the ones
    without the UTF-8 flag. Symbolic links are refused; ``__MACOSX/`` entries left out."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise PrepareError(f"the archive has {len(infos)} entries, more than {MAX_MEMBERS}; "
                           f"refusing it as a possible zip bomb")
    enc = choose_encoding((raw_name(i) for i in infos if not i.flag_bits & _UTF8_FLAG), encoding)
    members, seen = [], set()
    for info in infos:
        path = safe_member_path(decode_name(raw_name(info), bool(info.flag_bits & _UTF8_FLAG),
                                            "ascii" if enc == "ascii" else enc))
        if not path or path.split("/")[0] == "__MACOSX" or path in seen:
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise PrepareError(f"archive member {path!r} is a symbolic link; refusing to extract "
                               f"links (repack the archive without them)")
        seen.add(path)
        members.append(Member(info, path, int(info.file_size), info.is_dir()))
    return members, enc


def check_sizes(members: list[Member], out: Path) -> None:
    """``PrepareError`` when a member expands suspiciously (zip bomb) or the archive does not
    fit in the free space of ``out``'s file system (counting files already there)."""
    for m in members:
        packed = max(1, int(m.info.compress_size))
        if m.size > RATIO_FLOOR and m.size / packed > MAX_RATIO:
            raise PrepareError(f"archive member {m.path!r} expands from {packed} to {m.size} bytes "
                               f"({m.size // packed}x); refusing it as a possible zip bomb")
    need = sum(m.size for m in members if not m.is_dir and not _complete(out / m.path, m.size))
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + SPACE_MARGIN > free:
        raise PrepareError(f"extracting needs {need / 2**30:.2f} GiB but {probe} has "
                           f"{free / 2**30:.2f} GiB free; free some space or extract elsewhere")


def _complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def extract(archive: zipfile.ZipFile, members: list[Member], out: Path,
            progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Write ``members`` under ``out``; ``(extracted, already there)``. A file already there
    with the declared size is kept (a resumed run); each new one is written to a hidden
    temporary name and renamed. ``progress(files, bytes)`` is called as files complete."""
    done = kept = 0
    out_real = out.resolve()
    inside: set[Path] = set()  # folders checked to resolve inside ``out`` (no link leads out)
    for m in members:
        target = out / m.path
        folder = target if m.is_dir else target.parent
        if folder not in inside:
            real = folder.resolve()
            if real != out_real and not str(real).startswith(str(out_real) + os.sep):
                raise PrepareError(f"archive member {m.path!r} resolves outside {out} (through a "
                                   f"link already there); refusing to extract it")
            inside.add(folder)
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        if _complete(target, m.size):
            kept += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            written = 0
            try:
                with archive.open(m.info) as src, open(tmp, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > m.size:
                            raise PrepareError(f"archive member {m.path!r} holds more than the "
                                               f"{m.size} bytes it declares; refusing it")
                        dst.write(chunk)
                os.replace(tmp, target)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                tmp.unlink(missing_ok=True)
                raise PrepareError(f"archive member {m.path!r} cannot be read ({exc}); the "
                                   f"archive is damaged or incomplete: download it again") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            done += 1
        if progress:
            progress(1, m.size)
    return done, kept


# --------------------------------------------------------------------------- folders


def repair_name(name: str) -> str | None:
    """What a mangled file name should be, or None when it looks right (or cannot be told):
    bytes that are not UTF-8 (kept by Python as surrogates) decoded as GBK, or GBK bytes
    once shown as CP437 or Latin-1 (what naive unzips produce) decoded back."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        raw = os.fsencode(name)
        for enc in NAME_ENCODINGS[1:]:
            if _decodes(raw, enc):
                return raw.decode(enc)
        return None
    if name.isascii() or _has_cjk(name):
        return None
    for shown in ("cp437", "latin-1"):
        try:
            raw = name.encode(shown)
        except UnicodeEncodeError:
            continue
        if any(len(run) % 2 for run in _HIGH_RUNS.findall(raw)):
            continue  # GB2312 characters are byte pairs >= 0xA1: a lone high byte is not one
        for enc in NAME_ENCODINGS[1:]:
            try:
                fixed = raw.decode(enc)
            except UnicodeDecodeError:
                continue
            if _has_cjk(fixed) and all(c.isascii() and c.isprintable() or _is_cjk(c) for c in fixed):
                return fixed
    return None


_HIGH_RUNS = re.compile(rb"[\x80-\xff]+")


def _is_cjk(c: str) -> bool:
    return "\u3000" <= c <= "\u303f" or "\u3400" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef"


def _has_cjk(text: str) -> bool:
    return any(_is_cjk(c) for c in text)


def repair_names(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Rename mangled names under ``root`` in place, deepest first; ``(renamed, not repaired)``
    as relative paths (the second with the reason)."""
    renamed, failed = [], []
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            fixed = repair_name(name)
            broken = fixed is None and any(0xDC80 <= ord(c) <= 0xDCFF for c in name)
            old = os.path.join(dirpath, name)
            rel = os.path.relpath(old, root).encode("utf-8", "backslashreplace").decode("utf-8")
            if broken:
                failed.append((rel, "not UTF-8 and not GBK"))
                continue
            if fixed is None:
                continue
            new = os.path.join(dirpath, fixed)
            if os.path.lexists(new):
                failed.append((rel, f"{fixed!r} exists already"))
                continue
            os.rename(old, new)
            renamed.append((rel, os.path.relpath(new, root)))
    return renamed, failed


def find_data_root(top: Path) -> Path:
    """The folder under ``top`` (itself included, at most ``MAX_DEPTH`` down) that holds both
    ``train/`` and ``test/``; the shallowest one, ``PrepareError`` if none or several."""
    level = [top]
    for _ in range(MAX_DEPTH + 1):
        hits = [d for d in level if (d / "train").is_dir() and (d / "test").is_dir()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = ", ".join(str(h) for h in hits[:5])
            raise PrepareError(f"several folders under {top} hold train/ and test/ ({shown}); "
                               f"prepare one of them")
        nxt = []
        for d in level:
            try:
                nxt += sorted(e for e in d.iterdir() if e.is_dir() and not e.name.startswith(".")
                              and e.name != "__MACOSX")
            except OSError:
                pass
        level = nxt[:10000]
    raise PrepareError(f"no folder under {top} holds both train/ and test/ (looked {MAX_DEPTH} "
                       f"levels down); the dataset must have <folder>/train/<class>/<image> and "
                       f"<folder>/test/<class>/<image>")


def stray_files(root: Path) -> list[str]:
    """Files the reader ignores (relative to ``root``): not an image, or not in a class folder
    of train/ or test/. Hidden files are left out."""
    stray = []
    for split in ("train", "test"):
        for entry in sorted(os.scandir(root / split), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                stray.append(f"{split}/{entry.name}")
                continue
            for inner in os.scandir(entry.path):
                if inner.name.startswith("."):
                    continue
                if inner.is_dir() or not inner.name.lower().endswith(IMAGE_EXTENSIONS):
                    stray.append(f"{split}/{entry.name}/{inner.name}")
    return sorted(stray)


# --------------------------------------------------------------------------- the whole job


def _source_id(source: Path) -> dict:
    st = source.stat()
    return {"source": str(source), "size": st.st_size if source.is_file() else None,
            "mtime_ns": st.st_mtime_ns if source.is_file() else None}


def _previous(out: Path, source: Path, verify: str) -> Prepared | None:
    """The earlier run's result when it prepared this very source and nothing changed since."""
    from wrn.dataindex import tree_stamp

    try:
        old = json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
        if old.get("id") != _source_id(source) or old.get("verify") != verify:
            return None
        root = Path(old["data_path"])
        if old.get("stamp") != tree_stamp(root, verify)[1]:
            return None
        classes = json.loads((root / "classes.json").read_text(encoding="utf-8"))
        return Prepared(root, classes, int(old["train"]), int(old["test"]),
                        [tuple(b) for b in old.get("bad_images", [])], list(old.get("stray_files", [])),
                        old.get("name_encoding"), already=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError):
        return None


def prepare(source: str | os.PathLike, out: str | os.PathLike | None = None, *, verify: str = "quick",
            encoding: str | None = None, progress: Callable[[str, int, int], Callable[[int, int], None]] | None = None,
            log: Callable[[str], None] = lambda _m: None) -> Prepared:
    """Make ``source`` (a zip or a folder) a dataset to train on; see the module doc.

    ``out`` is where a zip is extracted (default: beside it, named after it); a folder is
    prepared in place (``out`` must be absent or the folder itself). ``progress(what, files,
    bytes)`` returns the callback ``extract`` reports to. ``PrepareError`` on bad input."""
    source = expand_user(source)
    if not source.exists():
        raise PrepareError(f"{source} does not exist; give the downloaded zip (e.g. "
                           f"rp2k_dataset.zip) or the folder it was extracted to")
    source = source.resolve()
    if source.is_dir():
        if out is not None and expand_user(out).resolve() != source:
            raise PrepareError(f"{source} is a folder: it is prepared in place; leave OUT out "
                               f"(or give the folder itself)")
        target = source
    else:
        target = expand_user(out).resolve() if out is not None else source.with_suffix("")
        if target.exists() and not target.is_dir():
            raise PrepareError(f"OUT {target} is a file; give a folder to extract into")
    old = _previous(target, source, verify)
    if old is not None:
        log(f"{source} was prepared already and nothing changed: nothing to do")
        return old
    result = Prepared(target, [], 0, 0)
    if source.is_file():
        _extract_archive(source, target, encoding, progress, log, result)
    result.renamed, result.unrepaired = repair_names(target)
    if result.renamed:
        log(f"repaired {len(result.renamed)} mangled name(s) (e.g. {result.renamed[0][0]!r} -> "
            f"{result.renamed[0][1]!r})")
    if result.unrepaired:
        shown = "; ".join(f"{p} ({why})" for p, why in result.unrepaired[:5])
        raise PrepareError(f"{len(result.unrepaired)} name(s) under {target} could not be "
                           f"repaired: {shown}; rename them by hand or pass the archive again "
                           f"with --encoding")
    try:
        root = find_data_root(target)
    except PrepareError as exc:
        if source.is_file():
            raise PrepareError(f"archive {source} extracted to {target}: {exc}") from None
        raise
    _verify(root, verify, result, log)
    _write_report(source, target, verify, result)
    return result


def _extract_archive(source: Path, target: Path, encoding: str | None, progress, log,
                     result: Prepared) -> None:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PrepareError(f"{source} is not a readable zip archive ({exc}); download it again, "
                           f"or give the folder it was extracted to") from None
    with archive:
        try:
            members, result.encoding = read_members(archive, encoding)
        except (ValueError, LookupError) as exc:
            raise PrepareError(f"{source}: cannot read the archive's names ({exc})") from None
        files = [m for m in members if not m.is_dir]
        log(f"{source.name}: {len(files)} files, {sum(m.size for m in files) / 2**20:.1f} MiB; "
            f"names without the UTF-8 flag read as {result.encoding}")
        target.mkdir(parents=True, exist_ok=True)
        check_sizes(members, target)
        report = progress("extracting", len(files), sum(m.size for m in files)) if progress else None
        result.extracted, result.skipped_existing = extract(archive, members, target, report)
    if result.skipped_existing:
        log(f"{result.skipped_existing} file(s) were extracted by an earlier run and kept")


def _verify(root: Path, verify: str, result: Prepared, log) -> None:
    from wrn.classindex import build_class_index

    try:
        classes = build_class_index(root)
        splits = [scan_split(root, s, classes, verify=verify, workers=scan_workers())
                  for s in ("train", "test")]
    except DataError as exc:
        raise PrepareError(str(exc)) from None
    result.data_path, result.classes = root, classes
    result.train, result.test = len(splits[0]), len(splits[1])
    result.bad = [(os.path.relpath(p, root), why) for s in splits for p, why in s.skipped]
    result.stray = stray_files(root)
    save_class_index(classes, root / "classes.json")
    log(f"{root}: {len(classes)} classes, {result.train} train and {result.test} test images; "
        f"{len(result.bad)} bad image(s), {len(result.stray)} stray file(s)")


def _write_report(source: Path, target: Path, verify: str, result: Prepared) -> None:
    """``prepare.json`` in the data folder (and in ``target``, where a second run looks for
    it): the result, what it was made from, the tree stamp."""
    from wrn.dataindex import tree_stamp

    root = result.data_path
    report = {**result.to_dict(), "id": _source_id(source), "verify": verify,
              "stamp": tree_stamp(root, verify)[1], "time": time.time()}
    for folder in {root, target}:
        write_json_atomic(folder / REPORT_NAME, report)
