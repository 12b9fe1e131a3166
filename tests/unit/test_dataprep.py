"""``wrn-launch data prepare``: zips the tests build (CP936 names without the UTF-8 flag, UTF-8
with it, nested all/, bad and empty images, a stray file), mangled folders, unsafe archives."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from launcher.cli import main as cli_main
from wrn import dataprep as P
from wrn import synth

CLASSES = synth.class_names(3)  # 可口可乐（300ml）, 农夫山泉 550ml, 纯牛奶100%


class RawName(zipfile.ZipInfo):
    """A member whose stored name is exactly ``raw`` (with or without the UTF-8 flag):
    zipfile itself would always write non-ASCII names as flagged UTF-8."""

    def __init__(self, raw: bytes, utf8_flag: bool) -> None:
        super().__init__(raw.decode("utf-8" if utf8_flag else "cp437"))
        self._raw, self._flag = raw, utf8_flag
        self.compress_type = zipfile.ZIP_DEFLATED

    def _encodeFilenameFlags(self):
        return self._raw, self.flag_bits | (0x800 if self._flag else 0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, list[bytes]]:
    """A few real image files per class, by split (from the sample generator)."""
    root = tmp_path_factory.mktemp("gen")
    synth.generate(root, num_classes=3, train_per_class=6, test_per_class=2)
    return {split: sorted((p.relative_to(root / split).as_posix(), p.read_bytes())
                          for p in (root / split).glob("*/*") if "corrupt" not in p.name)
            for split in ("train", "test")}


def make_zip(path: Path, images, *, encoding: str = "gbk", flag: bool = False, prefix: str = "all/",
             extra: list[tuple[str, bytes]] = ()) -> Path:
    entries = [(f"{prefix}{split}/{rel}", data) for split, items in images.items() for rel, data in items]
    entries += [(f"{prefix}{name}", data) for name, data in extra]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(RawName(name.encode("utf-8" if flag else encoding), flag), data)
    return path


def test_cp936_names_without_the_flag_come_out_right(tmp_path, images):
    zpath = make_zip(tmp_path / "rp2k_dataset.zip", images)
    with zipfile.ZipFile(zpath) as zf:  # what a naive reader sees: mojibake
        assert not any(CLASSES[0] in n for n in zf.namelist())
    lines = []
    result = P.prepare(zpath, tmp_path / "out", log=lines.append)
    assert result.encoding == "gbk"
    assert result.data_path == (tmp_path / "out" / "all").resolve()
    assert sorted(os.listdir(result.data_path / "train")) == sorted(CLASSES)
    assert json.loads((result.data_path / "classes.json").read_text("utf-8")) == sorted(CLASSES)
    assert (result.train, result.test, result.bad, result.stray) == (18, 6, [], [])
    assert any("read as gbk" in line for line in lines)


def test_utf8_names_with_the_flag(tmp_path, images):
    zpath = make_zip(tmp_path / "u.zip", images, flag=True, prefix="")
    result = P.prepare(zpath, tmp_path / "out")
    assert result.data_path == (tmp_path / "out").resolve()
    assert sorted(os.listdir(result.data_path / "test")) == sorted(CLASSES)
    assert result.encoding == "ascii"  # every name is flagged: none left to guess


def test_deep_nesting_bad_empty_images_and_a_stray_file(tmp_path, images):
    bad = [(f"train/{CLASSES[1]}/broken.jpg", b"\xff\xd8\xff" + b"\1" * 100),
           (f"test/{CLASSES[2]}/empty.png", b""), ("train/readme.txt", b"hello"),
           (f"train/{CLASSES[0]}/Thumbs.db", b"x")]
    zpath = make_zip(tmp_path / "d.zip", images, prefix="rp2k/all/", extra=bad)
    result = P.prepare(zpath, tmp_path / "out")
    assert result.data_path.name == "all" and result.data_path.parent.name == "rp2k"
    assert sorted(result.bad) == [(f"test/{CLASSES[2]}/empty.png", "empty file"),
                                  (f"train/{CLASSES[1]}/broken.jpg", "truncated JPEG (no end-of-image marker)")]
    assert result.stray == sorted([f"train/{CLASSES[0]}/Thumbs.db", "train/readme.txt"])
    report = json.loads((result.data_path / "prepare.json").read_text("utf-8"))
    assert report["bad_images"] and report["train"] == 18


def test_a_second_run_does_nothing(tmp_path, images):
    zpath = make_zip(tmp_path / "z.zip", images)
    first = P.prepare(zpath, tmp_path / "out")
    stamp = (first.data_path / "train" / CLASSES[0]).stat().st_mtime_ns
    lines = []
    again = P.prepare(zpath, tmp_path / "out", log=lines.append)
    assert again.already and again.data_path == first.data_path and again.classes == first.classes
    assert (first.data_path / "train" / CLASSES[0]).stat().st_mtime_ns == stamp
    assert lines == [f"{zpath.resolve()} was prepared already and nothing changed: nothing to do"]


def test_an_interrupted_extraction_finishes_on_the_next_run(tmp_path, images):
    zpath = make_zip(tmp_path / "z.zip", images)

    def progress(what, files, size):
        seen = [0]

        def advance(n, nbytes):
            seen[0] += n
            if seen[0] == 10:
                raise KeyboardInterrupt
        return advance
    with pytest.raises(KeyboardInterrupt):
        P.prepare(zpath, tmp_path / "out", progress=progress)
    assert not list((tmp_path / "out").rglob(".*.part"))
    result = P.prepare(zpath, tmp_path / "out")
    assert result.skipped_existing == 10 and result.extracted == 14 and result.train == 18


@pytest.mark.parametrize("name", ["../evil.jpg", "all/../../evil.jpg", "/etc/evil.jpg", "C:/evil.jpg",
                                  "all\\..\\..\\evil.jpg", "a/b\x01.jpg"])
def test_unsafe_member_names_are_refused_before_anything_is_written(tmp_path, images, name):
    zpath = make_zip(tmp_path / "z.zip", images, extra=[(name, b"x")], prefix="")
    with pytest.raises(P.PrepareError, match="refusing|control character"):
        P.prepare(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.jpg").exists()


def test_a_zip_bomb_and_a_full_disk_are_refused(tmp_path, images, monkeypatch):
    zpath = make_zip(tmp_path / "z.zip", images, extra=[("zeros.bin", b"\0" * 300_000)])
    monkeypatch.setattr(P, "RATIO_FLOOR", 100_000)
    with pytest.raises(P.PrepareError, match="zip bomb"):
        P.prepare(zpath, tmp_path / "out")
    monkeypatch.setattr(P, "RATIO_FLOOR", 1 << 40)
    monkeypatch.setattr(P, "SPACE_MARGIN", 1 << 60)
    with pytest.raises(P.PrepareError, match="GiB free"):
        P.prepare(zpath, tmp_path / "out2")


def test_a_folder_unzipped_naively_is_repaired_in_place(tmp_path, images):
    """Names as ``unzip`` without -O leaves them (GBK bytes) and as a CP437 reader shows them."""
    root = tmp_path / "naive"
    for k, (split, items) in enumerate(images.items()):
        for rel, data in items:
            cls, name = rel.split("/")
            raw = cls.encode("gbk")
            folder = (os.fsencode(root / split) + b"/" + raw) if k == 0 else \
                os.fsencode(root / split / raw.decode("cp437"))
            os.makedirs(folder, exist_ok=True)
            with open(folder + b"/" + name.encode(), "wb") as fh:
                fh.write(data)
    result = P.prepare(root)
    assert sorted(os.listdir(root / "train")) == sorted(os.listdir(root / "test")) == sorted(CLASSES)
    assert len(result.renamed) == 6 and result.train == 18
    assert P.prepare(root).already


def test_bad_input_is_one_clear_error_exit_2(tmp_path, images, capsys):
    (tmp_path / "notazip.zip").write_bytes(b"PK\x03\x04 garbage")
    (tmp_path / "empty").mkdir()
    for argv, words in (([str(tmp_path / "missing.zip")], "does not exist"),
                        ([str(tmp_path / "notazip.zip"), str(tmp_path / "o")], "not a readable zip"),
                        ([str(tmp_path / "empty")], "holds both train/ and test/"),
                        ([str(tmp_path / "empty"), str(tmp_path / "x")], "prepared in place")):
        assert cli_main(["data", "prepare", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["data", "prepare"])
    assert exit_.value.code == 2


def test_the_command_prints_the_data_path(tmp_path, images, capsys):
    zpath = make_zip(tmp_path / "rp2k_dataset.zip", images)
    assert cli_main(["data", "prepare", str(zpath), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"data_path: {(tmp_path / 'out' / 'all').resolve()}" in out and "num_classes: 3" in out


def test_names_neither_utf8_nor_gbk_ask_for_an_encoding():
    with pytest.raises(P.PrepareError, match="--encoding"):
        P.choose_encoding([b"\x80\xff\xfe"])
    assert P.choose_encoding([b"abc", "饼干".encode("gbk")]) == "gbk"
    assert P.choose_encoding(["饼干".encode()]) == "utf-8"
    assert P.choose_encoding([b"\x80\xff\xfe"], "latin-1") == "latin-1"
    assert P.decode_name("a\\饼".encode("gbk"), False, "gbk") == "a/饼"


def test_repair_name_leaves_good_names_alone():
    for good in ("可口可乐（300ml）", "plain.jpg", "café", "Ünïcode"):
        assert P.repair_name(good) is None
    assert P.repair_name("可口可乐".encode("gbk").decode("cp437")) == "可口可乐"
    assert P.repair_name(os.fsdecode("纯牛奶100%".encode("gbk"))) == "纯牛奶100%"


def test_zip_of_a_zip_reader_is_never_a_traceback():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x", b"y")
    assert zipfile.is_zipfile(io.BytesIO(buf.getvalue()))


def test_a_link_already_in_out_does_not_lead_outside(tmp_path, images):
    zpath = make_zip(tmp_path / "z.zip", images, prefix="all/")
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "all").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(P.PrepareError, match="resolves outside"):
        P.prepare(zpath, tmp_path / "out")
    assert not any((tmp_path / "elsewhere").iterdir())
