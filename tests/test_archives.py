"""Zip and tar members indexed as files (``archive.zip!/dir/member.pdf``), with every cap checked before
extraction: member count, total size, compression ratio, nesting depth, path traversal."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from ingest_files import write_text_pdf
from source_helpers import overlapping_zip, tar_bytes, zip_bytes
from vlsearch.collection import Collection
from vlsearch.ingest import ArchiveLimits, ExtractOptions, discover, extract_all, fingerprint
from vlsearch.ingest.archives import open_archive
from vlsearch.errors import MediaError
from vlsearch.ingest.sources import changed_reason, local_copy, open_source, under
from vlsearch.media.images import MediaLimits, NamedFile
from vlsearch.testing import gradient_image

OPTIONS = ExtractOptions(chunk_chars=400, chunk_overlap=50)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def png(tmp_path: Path, seed: int = 0) -> bytes:
    path = tmp_path / f"picture-{seed}.png"
    gradient_image(96, 64, seed=seed).save(path)
    return path.read_bytes()


@pytest.fixture()
def folder(tmp_path) -> Path:
    """A folder with a zip (good members, hostile ones, a nested zip and a too-deep one) and a tar.gz."""
    root = tmp_path / "shared"
    root.mkdir()
    report = write_text_pdf(tmp_path / "report.pdf", 2, text="Archived revenue").read_bytes()
    deeper = zip_bytes({"x.txt": b"three levels down"})
    inner = zip_bytes({"deep.txt": b"A note about walruses inside an inner archive.", "deeper.zip": deeper})
    (root / "docs.zip").write_bytes(zip_bytes({
        "dir/report.pdf": report, "notes.txt": b"Notes about penguins and glaciers.", "pics/a.png": png(tmp_path),
        "../evil.txt": b"escape", "/etc/abs.txt": b"absolute", "bomb.txt": b"\0" * (12 << 20), "inner.zip": inner}))
    (root / "texts.tar.gz").write_bytes(tar_bytes({f"t/{i}.txt": f"Tar member {i} about owls.".encode()
                                                   for i in range(3)}, links={"t/link.txt": "/etc/passwd"}))
    return root


def test_members_are_listed_with_the_caps_checked_before_extraction(folder):
    found = {f.relative: f for f in discover([folder])}
    good = {r for r, f in found.items() if f.ok}
    assert good == {"docs.zip!/dir/report.pdf", "docs.zip!/notes.txt", "docs.zip!/pics/a.png",
                    "docs.zip!/inner.zip!/deep.txt", "texts.tar.gz!/t/0.txt", "texts.tar.gz!/t/1.txt",
                    "texts.tar.gz!/t/2.txt"}
    assert found["docs.zip!/dir/report.pdf"].source == f"{folder}/docs.zip!/dir/report.pdf"
    assert "path traversal" in found["docs.zip!/../evil.txt"].error
    assert "path traversal" in found["docs.zip!//etc/abs.txt"].error
    assert "compression ratio" in found["docs.zip!/bomb.txt"].error and "zip bomb" in found["docs.zip!/bomb.txt"].error
    assert "nested 3 deep, over the cap of 2" in found["docs.zip!/inner.zip!/deeper.zip"].error
    assert "link or special file" in found["texts.tar.gz!/t/link.txt"].error
    # filters see member paths; a cap on members stops the listing and fails the archive itself
    assert {f.relative for f in discover([folder], include=["*.txt"]) if f.ok} == {
        "docs.zip!/notes.txt", "docs.zip!/inner.zip!/deep.txt", *(f"texts.tar.gz!/t/{i}.txt" for i in range(3))}
    capped = list(discover([folder / "texts.tar.gz"], archives=ArchiveLimits(max_members=2)))
    assert [f.relative for f in capped if f.ok] == ["texts.tar.gz!/t/0.txt", "texts.tar.gz!/t/1.txt"]
    assert capped[-1].source == str(folder / "texts.tar.gz") and "cap of 2" in capped[-1].error
    shallow = {f.relative: f for f in discover([folder], archives=ArchiveLimits(max_depth=1))}
    assert "nested 2 deep" in shallow["docs.zip!/inner.zip"].error


def test_total_size_and_tar_ratio_caps_keep_the_members_before_them(tmp_path):
    (tmp_path / "sizes.zip").write_bytes(zip_bytes({f"{i}.txt": b"x" * 1000 for i in range(5)}, zipfile.ZIP_STORED))
    listed = list(discover([tmp_path / "sizes.zip"], archives=ArchiveLimits(max_total_bytes=2500)))
    assert [f.relative for f in listed if f.ok] == ["sizes.zip!/0.txt", "sizes.zip!/1.txt"]
    assert "larger than 2500 bytes uncompressed in total" in listed[-1].error
    (tmp_path / "bomb.tar.gz").write_bytes(tar_bytes({"zeros.txt": b"\0" * (8 << 20), "after.txt": b"late"}))
    bomb = list(discover([tmp_path / "bomb.tar.gz"]))  # a tar's header gives no packed size: the ratio
    assert [f.relative for f in bomb if f.ok] == ["bomb.tar.gz!/zeros.txt"]  # shows once its data is passed
    assert "compression ratio over 100:1" in bomb[-1].error
    with open(tmp_path / "bomb.tar.gz", "rb") as stream:  # ... and stops the member itself as it is read
        archive = open_archive(stream, "tar", "bomb.tar.gz", ArchiveLimits(), (tmp_path / "bomb.tar.gz").stat().st_size)
        with pytest.raises(MediaError, match="compression ratio over 100:1"), archive.open("zeros.txt") as member:
            member.read()
    plain = os.urandom(3 << 20)  # a stored tar, or a compressed one whose first member is large and dense
    for name, mode in (("big.tar", "w"), ("big.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / name, mode) as tar:
            info = tarfile.TarInfo("scan.pdf")
            info.size = len(plain)
            tar.addfile(info, io.BytesIO(plain))
        (found,) = discover([tmp_path / name])
        assert found.ok, found.error
        with open(tmp_path / name, "rb") as stream:
            archive = open_archive(stream, "tar", name, ArchiveLimits(), (tmp_path / name).stat().st_size)
            with archive.open("scan.pdf") as member:
                assert member.read() == plain
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    (entry,) = discover([broken])
    assert entry.folder and "not a readable zip archive" in entry.error


def test_members_are_read_through_private_copies_with_the_caps(folder, tmp_path):
    member = f"{folder}/docs.zip!/notes.txt"
    with open_source(member, MediaLimits()) as stream:
        assert stream.read() == b"Notes about penguins and glaciers."
    with local_copy(member, MediaLimits()) as copy:
        assert isinstance(copy, NamedFile) and copy.name == member and Path(copy.data).suffix == ".txt"
        kept = Path(copy.data)
        assert kept.read_bytes() == b"Notes about penguins and glaciers."
    assert not kept.exists()  # no digest: not kept after use
    with pytest.raises(Exception, match="34 bytes, larger than 10"):
        with local_copy(member, MediaLimits(max_file_bytes=10)):
            pass
    with pytest.raises(Exception, match="path traversal"):
        with open_source(f"{folder}/docs.zip!/../evil.txt", MediaLimits()):
            pass
    nested = f"{folder}/docs.zip!/inner.zip!/deep.txt"
    with open_source(nested, MediaLimits()) as stream:
        assert b"walruses" in stream.read()
    entry = next(f for f in discover([folder]) if f.source == nested)
    digest = fingerprint(entry)
    assert changed_reason(nested, digest, entry.size, entry.mtime) == ""
    assert "no such member" in changed_reason(f"{folder}/docs.zip!/gone.txt", digest)


def test_extract_members_in_worker_processes(folder):
    tasks = [(f, fingerprint(f)) for f in discover([folder]) if f.ok]
    results = {r.found.relative: r for r in extract_all(tasks, OPTIONS, workers=2)}
    assert all(r.ok for r in results.values()), [r.error for r in results.values() if not r.ok]
    pages = results["docs.zip!/dir/report.pdf"].pieces
    assert [p.page for p in pages] == [1, 2] and "Archived revenue" in pages[0].text
    assert pages[0].source == f"{folder}/docs.zip!/dir/report.pdf"
    assert "walruses" in results["docs.zip!/inner.zip!/deep.txt"].pieces[0].text


def test_collection_indexes_members_reranks_them_and_prunes_a_deleted_archive(home, folder, embedder_path,
                                                                           reranker_path):
    c = Collection("arch", model=str(embedder_path), reranker=str(reranker_path))
    report = c.add([folder], options=OPTIONS, workers=0)
    failed = {s[len(str(folder)) + 1:]: reason for s, reason in report.failed}
    assert set(failed) == {"docs.zip!/../evil.txt", "docs.zip!//etc/abs.txt", "docs.zip!/bomb.txt",
                           "docs.zip!/inner.zip!/deeper.zip", "texts.tar.gz!/t/link.txt"}, report.summary()
    assert report.new == 7 and report.items == 2 + 1 + 1 + 1 + 3, report.summary()
    results = c.search("revenue penguins", top_k=20, rerank_inputs="full")  # as indexed, from the source
    by_source = {r.source[len(str(folder)) + 1:]: r for r in results}
    assert "docs.zip!/dir/report.pdf" in by_source and "docs.zip!/pics/a.png" in by_source
    assert all(r.note == "" for r in results), [r.note for r in results]  # rebuilt from the members
    again = c.add([folder], options=OPTIONS, workers=0)
    assert again.unchanged == 7 and again.items == 0
    # a changed member is re-indexed, the others are not; a deleted archive is pruned
    (folder / "texts.tar.gz").write_bytes(tar_bytes({"t/0.txt": b"Tar member 0 about owls.",
                                                     "t/1.txt": b"Changed text about eagles.",
                                                     "t/2.txt": b"Tar member 2 about owls."}))
    third = c.add([folder], options=OPTIONS, workers=0)
    assert third.changed == 1 and third.unchanged == 6, third.summary()
    assert any("eagles" in r.text for r in c.search("eagles", mode="lexical", rerank=False))
    (folder / "docs.zip").unlink()
    pruned = c.add([folder], options=OPTIONS, workers=0, prune=True)
    # docs.zip's 4 indexed members and 4 refused ones, and the link the new texts.tar.gz lacks
    assert pruned.pruned == 4 + 4 + 1
    assert not [s for s in c.store.files() if "docs.zip" in s]
    assert c.forget_under([folder / "texts.tar.gz"]) == 3 and not c.store.files()


# -- costs: linear in the archive, whatever its member count ---------------------------------------

def bytes_read() -> int:
    """Bytes this process has read from files so far (Linux: ``rchar`` of /proc/self/io)."""
    with open("/proc/self/io") as stats:
        return next(int(line.split()[1]) for line in stats if line.startswith("rchar:"))


linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")


@linux_only
@pytest.mark.parametrize("name, members", [("many.zip", 2000), ("many.tar.gz", 300)])
def test_reading_every_member_in_order_reads_the_archive_about_once(tmp_path, name, members):
    data = {f"m/{i:05}.txt": os.urandom(300).hex().encode() for i in range(members)}
    path = tmp_path / name
    path.write_bytes(zip_bytes(data) if name.endswith(".zip") else tar_bytes(data))
    before = bytes_read()
    for member, content in data.items():  # what fingerprinting the listed members does, one after the other
        with open_source(f"{path}{'!/'}{member}", MediaLimits()) as stream:
            assert stream.read() == content
    # before: the whole directory (zip) or the whole stream up to the member (tar) was read for each member
    assert bytes_read() - before < 3 * path.stat().st_size + (1 << 20)


@linux_only
def test_listing_reads_no_more_directory_entries_than_the_cap(tmp_path):
    path = tmp_path / "wide.zip"
    path.write_bytes(zip_bytes({f"{i:06}.txt": b"x" for i in range(8000)}, zipfile.ZIP_STORED))
    before = bytes_read()
    listed = list(discover([path], archives=ArchiveLimits(max_members=10)))
    assert bytes_read() - before < 128 << 10  # the end records and ten entries, not 8000 (~470 KiB)
    assert len([f for f in listed if f.ok]) == 10 and "cap of 10" in listed[-1].error


# -- bombs and shadowed names -------------------------------------------------------------------------

def test_overlapping_members_zip_bomb_is_refused_before_any_inflating(tmp_path):
    bomb = tmp_path / "overlap.zip"
    bomb.write_bytes(overlapping_zip(64, 1_000_000))  # ~8 KiB declaring 64 MB, each member under 1 MiB
    (entry,) = discover([bomb])
    assert not entry.ok and "overlaps" in entry.error and "zip bomb" in entry.error
    with pytest.raises(MediaError, match="overlaps"):
        with open_source(f"{bomb}!/0000.txt", MediaLimits()):
            pass


def test_compression_ratio_cap_applies_to_the_whole_archive(tmp_path):
    path = tmp_path / "spread.zip"  # each member under the 1 MiB floor of the per-member check
    path.write_bytes(zip_bytes({f"{i}.txt": b"\0" * (900 << 10) for i in range(20)}))
    listed = list(discover([path]))
    ok = [f.relative for f in listed if f.ok]
    assert 0 < len(ok) < 20 and ok == [f"spread.zip!/{i}.txt" for i in range(len(ok))]
    assert "compression ratio over 100:1" in listed[-1].error


def duplicated(kind: str, small: bytes, big: bytes) -> bytes:
    """An archive of ``dup.txt`` (small), ``a.txt`` and ``dup.txt`` again (big, stored)."""
    entries = [("dup.txt", small), ("a.txt", b"a"), ("dup.txt", big)]
    buffer = io.BytesIO()
    if kind == "zip":
        with pytest.warns(UserWarning), zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", ["zip", "tar.gz"])
def test_a_duplicated_name_reads_the_entry_the_caps_were_checked_on(tmp_path, suffix):
    path = tmp_path / f"dup.{suffix}"
    path.write_bytes(duplicated(suffix.split(".")[0], b"small and checked", b"B" * (2 << 20)))
    for limits in (ArchiveLimits(max_members=2), ArchiveLimits()):  # the later one past the cap, or within it
        listed = list(discover([path], archives=limits))
        assert [(f.relative, f.size, f.ok) for f in listed if "!/" in f.relative] == [
            (f"dup.{suffix}!/dup.txt", 17, True), (f"dup.{suffix}!/a.txt", 1, True)]  # the later one not listed
        with open_source(f"{path}!/dup.txt", MediaLimits(), limits) as stream:
            assert stream.read() == b"small and checked"


# -- the separator in plain names ---------------------------------------------------------------------

def test_a_folder_named_like_an_archive_with_the_separator_is_not_read_as_its_members(home, tmp_path,
                                                                                      embedder_path):
    root = tmp_path / "d"
    (root / "a.zip!").mkdir(parents=True)
    (root / "a.zip").write_bytes(zip_bytes({"x.txt": b"x the archived member about owls"}))
    (root / "a.zip!" / "x.txt").write_text("x a plain file in a folder named a.zip! about herons")
    (root / "a.zip!" / "y.txt").write_text("x another plain file about herons")
    found = [(f.relative, f.error) for f in discover([root])]
    assert found[0] == ("a.zip!/x.txt", None)  # the member; the plain file of its name is left out
    (relative, error), = found[1:]
    assert relative == "a.zip!/y.txt" and "'!/' after 'a.zip'" in error
    c = Collection("plain", model=str(embedder_path))
    c.add([root], options=OPTIONS, workers=0)
    texts = [r.text for r in c.search("herons owls", mode="lexical", rerank=False)]
    assert texts == ["x the archived member about owls"]  # the folder's files are never read as members
    # a folder named a.zip! going away is not the archive a.zip going away
    assert not under(f"{root}/a.zip!/x.txt", f"{root}/a.zip!") and under(f"{root}/a.zip!/x.txt", str(root))
    assert c.forget_under([root / "a.zip!"]) == 0 and c.info()["files"] == 1
