"""The built-in sample dataset: a small synthetic set in the RP2K folder layout.

``data_path: builtin:rp2k-sample`` (``wrn.config.BUILTIN_DATA``) points here. The set looks like
RP2K on disk, so it exercises the same reader code paths as the real data:

* ``<root>/train/<class>/<file>`` and ``<root>/test/<class>/<file>``;
* class names are Chinese product names with full-width brackets, spaces, ``%``, ``+`` and ``.``;
* a mix of JPEG and PNG files with mixed-case extensions (``.jpg .JPG .jpeg .png .PNG``);
* exactly one deliberately corrupt file in ``train/`` (a truncated JPEG), which the reader must
  skip and report rather than crash on.

Each class is a *shape or pattern* (disc, ring, square, triangle, ...), drawn with random
foreground and background colours, position, scale, rotation (where it does not turn one class
into another) and pixel noise, so colour alone does not identify a class but a small Wide ResNet
separates them easily at 32x32.

Generation is deterministic: every image is drawn from its own random generator seeded with
``(seed, split, class, index)`` and encoded with fixed PIL settings, so the same seed gives the
same bytes (with the same Pillow/libjpeg build).

``ensure_builtin()`` creates the set once per machine under ``$WRN_DATA_HOME`` (default
``~/.cache/wrn-launch``); it is safe to call from many processes at once.

Command line: ``python -m wrn.synth OUT_DIR [--classes N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wrn.contract import DATA_HOME_ENV

#: Folder name of the built-in set; bump the suffix whenever the generated content changes.
BUILTIN_NAME = "rp2k-sample-v1"
#: Marker file written last into a finished dataset (holds the JSON summary).
COMPLETE_MARKER = ".complete"

DEFAULT_TRAIN_PER_CLASS = 120
DEFAULT_TEST_PER_CLASS = 30
#: Stored images have a random width and height in this range (pixels, inclusive).
DEFAULT_SIZE = (36, 48)

_EXTENSIONS = (".jpg", ".png", ".JPG", ".jpeg", ".PNG")
_JPEG_QUALITY = 92
_PNG_COMPRESS = 6
_SUPERSAMPLE = 4

# One product-like name per shape. Together they use every awkward character seen in RP2K
# class names: full-width brackets, spaces, '%', '+', '.'.
_CLASSES: tuple[tuple[str, str], ...] = (
    ("可口可乐（300ml）", "disc"),
    ("农夫山泉 550ml", "ring"),
    ("纯牛奶100%", "square"),
    ("薯片+番茄味", "triangle"),
    ("维他柠檬茶.原味", "cross"),
    ("康师傅红烧牛肉面（袋装）", "hstripes"),
    ("旺仔牛奶 245ml", "vstripes"),
    ("奥利奥夹心饼干+巧克力", "checker"),
    ("雪碧（清爽柠檬味）.500ml", "diamond"),
    ("德芙黑巧克力70%", "xmark"),
    ("百事可乐 无糖（330ml）", "frame"),
    ("乐事薯片+黄瓜味.70g", "dots"),
)

#: Largest ``num_classes`` that ``generate`` supports (one shape per class).
MAX_CLASSES = len(_CLASSES)


def class_names(num_classes: int = 10) -> list[str]:
    """The class (folder) names ``generate`` uses for ``num_classes`` classes, in shape order."""
    _check_num_classes(num_classes)
    return [name for name, _ in _CLASSES[:num_classes]]


def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be an integer from 2 to {MAX_CLASSES}; got {num_classes!r}")


# --------------------------------------------------------------------------- drawing


def _rotate(points: np.ndarray, angle: float, centre: tuple[float, float]) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0], points[:, 1]
    return list(zip(centre[0] + c * x - s * y, centre[1] + s * x + c * y))


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A random (foreground, background) pair that differ clearly in brightness or hue."""
    while True:
        fg = rng.integers(0, 256, 3)
        bg = rng.integers(0, 256, 3)
        if np.abs(fg - bg).sum() >= 200 and abs(int(fg.mean()) - int(bg.mean())) >= 40:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def _draw_shape(draw, shape: str, rng: np.random.Generator, w: int, h: int, fg) -> None:
    """Draw one class's shape onto a supersampled canvas of size (w, h)."""
    side = min(w, h)
    r = side * rng.uniform(0.28, 0.42)  # half extent of the shape
    cx = w / 2 + rng.uniform(-1, 1) * (w / 2 - r) * 0.6
    cy = h / 2 + rng.uniform(-1, 1) * (h / 2 - r) * 0.6
    tilt = math.radians(rng.uniform(-12, 12))  # small rotation that keeps the class's identity

    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "ring":
        t = r * rng.uniform(0.28, 0.4)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=int(round(t)))
    elif shape in ("square", "diamond"):
        angle = tilt + (math.pi / 4 if shape == "diamond" else 0.0)
        s = r * (0.85 if shape == "square" else 1.0)
        pts = np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
        draw.polygon(_rotate(pts, angle, (cx, cy)), fill=fg)
    elif shape == "triangle":
        angle = rng.uniform(0, 2 * math.pi)
        pts = np.array([[r * math.cos(a), r * math.sin(a)] for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)])
        draw.polygon(_rotate(pts * 1.15, angle, (cx, cy)), fill=fg)
    elif shape in ("cross", "xmark"):
        angle = tilt + (math.pi / 4 if shape == "xmark" else 0.0)
        t = r * rng.uniform(0.28, 0.36)
        for base in (0.0, math.pi / 2):
            pts = np.array([[-r, -t], [r, -t], [r, t], [-r, t]])
            draw.polygon(_rotate(pts, angle + base, (cx, cy)), fill=fg)
    elif shape in ("hstripes", "vstripes"):
        n = int(rng.integers(3, 5))
        period = 2 * r / n
        angle = tilt + (math.pi / 2 if shape == "vstripes" else 0.0)
        for k in range(n):
            y0 = -r + k * period
            pts = np.array([[-r, y0], [r, y0], [r, y0 + period / 2], [-r, y0 + period / 2]])
            draw.polygon(_rotate(pts, angle, (cx, cy)), fill=fg)
    elif shape == "checker":
        n = int(rng.integers(3, 5))
        cell = 2 * r / n
        for i in range(n):
            for j in range(n):
                if (i + j) % 2 == 0:
                    x0, y0 = -r + i * cell, -r + j * cell
                    pts = np.array([[x0, y0], [x0 + cell, y0], [x0 + cell, y0 + cell], [x0, y0 + cell]])
                    draw.polygon(_rotate(pts, tilt, (cx, cy)), fill=fg)
    elif shape == "frame":
        t = r * rng.uniform(0.25, 0.35)
        outer = np.array([[-r, -r], [r, -r], [r, r], [-r, r]])
        draw.polygon(_rotate(outer, tilt, (cx, cy)), outline=fg, width=int(round(t)))
    elif shape == "dots":
        d = r * 0.42
        for sx, sy in ((-1, -1), (1, 1)):
            px, py = _rotate(np.array([[sx * r * 0.55, sy * r * 0.55]]), tilt, (cx, cy))[0]
            draw.ellipse([px - d, py - d, px + d, py + d], fill=fg)
    else:  # pragma: no cover - the table above is the only caller
        raise ValueError(f"unknown shape {shape!r}")


def render(shape: str, rng: np.random.Generator, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Draw one sample image of ``shape`` as an HxWx3 uint8 array (random size within ``size``)."""
    from PIL import Image, ImageDraw

    w = int(rng.integers(size[0], size[1] + 1))
    h = int(rng.integers(size[0], size[1] + 1))
    fg, bg = _colours(rng)
    big = Image.new("RGB", (w * _SUPERSAMPLE, h * _SUPERSAMPLE), bg)
    _draw_shape(ImageDraw.Draw(big), shape, rng, w * _SUPERSAMPLE, h * _SUPERSAMPLE, fg)
    img = np.asarray(big.resize((w, h), Image.BILINEAR, reducing_gap=None), dtype=np.float32)
    # a gentle brightness gradient plus pixel noise, so flat colour statistics vary too
    gx = np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-20, 20)
    gy = np.linspace(-1, 1, h)[:, None, None] * rng.uniform(-20, 20)
    img = img + gx + gy + rng.normal(0.0, rng.uniform(3, 10), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, ext: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if ext.lower() in (".jpg", ".jpeg"):
        Image.fromarray(arr).save(buf, format="JPEG", quality=_JPEG_QUALITY, subsampling=0, optimize=False)
    else:
        Image.fromarray(arr).save(buf, format="PNG", compress_level=_PNG_COMPRESS, optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- generation


def generate(root: str | os.PathLike, *, num_classes: int = 10,
             train_per_class: int = DEFAULT_TRAIN_PER_CLASS, test_per_class: int = DEFAULT_TEST_PER_CLASS,
             size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> dict:
    """Write the sample dataset under ``root`` and return a summary dict.

    Creates ``root/train/<class>/NNNNN.<ext>`` (``train_per_class`` images per class) and
    ``root/test/<class>/...`` (``test_per_class`` per class), plus one corrupt file
    ``root/train/<first class>/corrupt_00000.jpg`` (a JPEG cut in half). ``size`` is the
    (min, max) side length in pixels. Existing files with the same names are overwritten; no
    completion marker is written (``ensure_builtin`` does that). The summary holds the class
    names, per-split counts of valid images, the corrupt file's relative path, the total bytes
    written and the generation time.
    """
    _check_num_classes(num_classes)
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError("train_per_class and test_per_class must be at least 1")
    lo, hi = int(size[0]), int(size[1])
    if not 8 <= lo <= hi:
        raise ValueError(f"size must be (min, max) with 8 <= min <= max; got {size!r}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more; got {seed!r}")
    start = time.perf_counter()
    root = Path(root)
    total_bytes = 0
    counts = {}
    for split_id, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        for label, (name, shape) in enumerate(_CLASSES[:num_classes]):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, split_id, label, i])
                ext = _EXTENSIONS[(i + label) % len(_EXTENSIONS)]
                data = _encode(render(shape, rng, (lo, hi)), ext)
                (folder / f"{i:05d}{ext}").write_bytes(data)
                total_bytes += len(data)
        counts[split] = per_class * num_classes
    # The one deliberately broken file: a valid JPEG header whose data stops half way.
    rng = np.random.default_rng([seed, 99])
    good = _encode(render(_CLASSES[0][1], rng, (lo, hi)), ".jpg")
    corrupt = Path("train") / _CLASSES[0][0] / "corrupt_00000.jpg"
    (root / corrupt).write_bytes(good[: len(good) // 2])
    total_bytes += len(good) // 2
    return {
        "name": BUILTIN_NAME,
        "seed": seed,
        "classes": class_names(num_classes),
        "num_classes": num_classes,
        "train": counts["train"],
        "test": counts["test"],
        "corrupt": [corrupt.as_posix()],
        "size": [lo, hi],
        "bytes": total_bytes,
        "seconds": round(time.perf_counter() - start, 3),
    }


#: RP2K's size: class folders, train and test images.
RP2K_SHAPE = (2388, 344854, 39457)
_BRANDS = ("可口可乐", "农夫山泉", "康师傅", "统一", "旺仔", "伊利", "蒙牛", "百事", "乐事", "德芙",
           "奥利奥", "维他", "雪碧", "加多宝", "王老吉", "娃哈哈", "好丽友", "达利园", "三只松鼠", "洽洽")
_PRODUCTS = ("纯牛奶", "红烧牛肉面", "薯片", "柠檬茶", "矿泉水", "夹心饼干", "黑巧克力", "酸奶", "绿茶",
             "方便面", "瓜子", "凉茶")
_VARIANTS = ("（300ml）", " 550ml", "100%", "+番茄味", ".原味", "（袋装）", " 无糖（330ml）", ".70g",
             "+黄瓜味", "（清爽柠檬味）.500ml")


def shaped_class_names(count: int) -> list[str]:
    """``count`` distinct RP2K-like class names (brand + product + variant + a serial where the
    combinations run out), with RP2K's awkward characters: full-width brackets, spaces, %, +, ."""
    names = []
    for i in range(count):
        variant = _VARIANTS[i % len(_VARIANTS)]
        brand = _BRANDS[(i // len(_VARIANTS)) % len(_BRANDS)]
        product = _PRODUCTS[(i // (len(_VARIANTS) * len(_BRANDS))) % len(_PRODUCTS)]
        serial = i // (len(_BRANDS) * len(_PRODUCTS) * len(_VARIANTS))
        names.append(f"{brand}{product}{variant}" + (f"-{serial}" if serial else ""))
    return names


def linked_tree(root: str | os.PathLike, source: str | os.PathLike, *, classes: int = RP2K_SHAPE[0],
                train: int = RP2K_SHAPE[1], test: int = RP2K_SHAPE[2]) -> dict:
    """A dataset of RP2K's shape made cheaply: ``classes`` class folders named by
    ``shaped_class_names``, ``train``/``test`` image files spread evenly over them, each a hard
    link to one of the images of the dataset ``source`` (cycled). Nothing is decoded or copied,
    so RP2K's full size (384k files) takes seconds and no space. ``root`` must be on the same
    file system as ``source``; existing files are kept. Returns the counts."""
    images = sorted(p for p in Path(source).glob("t*/*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                    and "corrupt" not in p.name)
    if not images:
        raise ValueError(f"linked_tree: {source} holds no images to link to")
    names = shaped_class_names(classes)
    k = 0
    for split, total in (("train", train), ("test", test)):
        for c, name in enumerate(names):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(total // classes + (1 if c < total % classes else 0)):
                image = images[k % len(images)]
                k += 1
                target = folder / f"{i:06d}{image.suffix}"
                if not target.exists():
                    os.link(image, target)
    return {"classes": classes, "train": train, "test": test, "sources": len(images)}


def data_home() -> Path:
    """Folder holding generated datasets: ``$WRN_DATA_HOME`` or ``~/.cache/wrn-launch``."""
    env = os.environ.get(DATA_HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wrn-launch"


def is_complete(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a finished dataset (its completion marker exists)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _host_lock(lock_path: Path):
    """Hold an exclusive advisory lock on ``lock_path`` (best effort).

    Only saves work: processes on one host wait for the first one to generate instead of all
    generating. Correctness never depends on it (``ensure_builtin`` publishes by rename), so
    file systems without ``flock`` just skip it.
    """
    try:
        import fcntl

        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def ensure_builtin(path: str | os.PathLike | None = None, *,
                   log: Callable[[str], None] | None = None) -> Path:
    """Return the folder of the built-in sample dataset, generating it first if needed.

    ``path`` defaults to ``data_home() / BUILTIN_NAME``. A folder counts as present only when
    its completion marker exists. Otherwise the set is generated into a fresh temporary folder
    next to the target, the marker is written last, and the folder is renamed into place in
    one step, so other processes never see a half-written dataset. Several processes (or
    hosts sharing a file system) may call this at once: whoever renames first wins, the others
    discard their copy. A leftover target without a marker (from an interrupted copy by hand)
    is moved aside and replaced. ``log`` receives one line when generation starts. The content
    is always ``generate(path)`` with its defaults (10 classes, seed 0).
    """
    target = Path(path).expanduser() if path is not None else data_home() / BUILTIN_NAME
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _host_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):
            return target
        if log is not None:
            log(f"generating the built-in sample dataset in {target} (seconds, once per machine)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is meant to be shared
            summary = generate(tmp)
            marker = tmp / COMPLETE_MARKER
            marker.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            for _ in range(5):
                try:
                    os.rename(tmp, target)
                    return target
                except OSError:
                    if is_complete(target):
                        return target  # someone else finished first; ours is discarded below
                    if target.exists():
                        _move_aside(target)
            raise RuntimeError(f"could not move the generated dataset into {target}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _move_aside(target: Path) -> None:
    """Rename an incomplete ``target`` to a unique name and delete it.

    If another process published a complete dataset between our check and the rename, the
    folder we moved is complete: it is moved back when the target is still free.
    """
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
    try:
        os.rename(target, trash / "old")
        if is_complete(trash / "old"):
            os.rename(trash / "old", target)
    except OSError:
        pass  # gone already, or a complete one is back in place
    shutil.rmtree(trash, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the sample dataset into OUT_DIR and print its summary."""
    parser = argparse.ArgumentParser(prog="python -m wrn.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to create train/ and test/ in")
    parser.add_argument("--classes", type=int, default=10, help=f"number of classes, 2..{MAX_CLASSES} (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--train-per-class", type=int, default=DEFAULT_TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=DEFAULT_TEST_PER_CLASS)
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out_dir, num_classes=args.classes, seed=args.seed,
                           train_per_class=args.train_per_class, test_per_class=args.test_per_class)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
