"""Office documents: rendered to PDF by LibreOffice (headless, a private profile per conversion, a timeout)
in the decoding workers, then indexed page by page with the text layer. Real documents, written by
python-docx, python-pptx and openpyxl, and converted to the other formats by LibreOffice itself."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from source_helpers import libreoffice_convert, write_docx, write_pptx, write_xlsx, zip_bytes
from vlsearch.collection import Collection
from vlsearch.ingest import ExtractOptions, discover, extract, fingerprint
from vlsearch.ingest.office import INSTALL, PROGRAM_ENV

needs_libreoffice = pytest.mark.skipif(shutil.which("soffice") is None,
                                       reason=f"LibreOffice is not installed ({INSTALL})")
OPTIONS = ExtractOptions(max_pixels=256 * 256, office_timeout=90)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(PROGRAM_ENV, raising=False)
    return tmp_path / "home"


@pytest.fixture()
def documents(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "office"
    folder.mkdir()
    return {"docx": write_docx(folder / "plan.docx", ["Quarterly plan for penguins.", "Budget for glaciers."]),
            "pptx": write_pptx(folder / "deck.pptx", ["Walrus migration", "Iceberg survey"]),
            "xlsx": write_xlsx(folder / "budget.xlsx", [["Item", "Cost"], ["Sledges", 1200], ["Tents", 800]])}


@needs_libreoffice
def test_office_documents_are_indexed_page_by_page_with_their_text(home, documents, embedder_path, reranker_path):
    (documents["docx"].parent / "pack.zip").write_bytes(zip_bytes({"in/memo.docx": documents["docx"].read_bytes()}))
    c = Collection("office", model=str(embedder_path), reranker=str(reranker_path))
    report = c.add([documents["docx"].parent], options=OPTIONS, workers=2)  # conversions side by side
    assert report.failed == [] and report.new == 4, report.summary()
    hits = c.search("penguins", mode="lexical", rerank=False, top_k=20)
    by_source = {(Path(h.source).name, h.page): h for h in hits}
    assert ("plan.docx", 1) in by_source and by_source[("plan.docx", 1)].modality == "pdf_page"
    assert "Quarterly plan for penguins" in by_source[("plan.docx", 1)].text
    assert any(h.source.endswith("pack.zip!/in/memo.docx") for h in hits)  # an Office file inside an archive
    glaciers = {(Path(h.source).name, h.page) for h in c.search("glaciers", mode="lexical", rerank=False)}
    assert ("plan.docx", 2) in glaciers  # the page break made a second page
    slides = {h.page: h.text for h in c.search("survey migration", mode="lexical", rerank=False)
              if h.source.endswith("deck.pptx")}
    assert "Walrus migration" in slides[1] and "Iceberg survey" in slides[2]
    (sheet,) = [h for h in c.search("Sledges", mode="lexical", rerank=False) if h.source.endswith(".xlsx")]
    assert "1200" in sheet.text and sheet.metadata["page_count"] == 1
    assert c.add([documents["docx"].parent], options=OPTIONS, workers=0).unchanged == 4
    # reranking renders the pages again from the documents (each converted once)
    reranked = c.search("penguins glaciers", top_k=6)
    assert {Path(r.source).name for r in reranked} >= {"plan.docx"}
    assert all(r.rerank_score is not None and r.note == "" for r in reranked), [r.note for r in reranked]


@needs_libreoffice
@pytest.mark.slow
def test_every_office_format_converts(tmp_path, documents):
    """odt, rtf, doc, odp, ppt, ods and xls, each written by LibreOffice from the documents above."""
    converted = [*libreoffice_convert([documents["docx"]], "odt", tmp_path / "c"),
                 *libreoffice_convert([documents["docx"]], "rtf", tmp_path / "c"),
                 *libreoffice_convert([documents["docx"]], "doc", tmp_path / "c"),
                 *libreoffice_convert([documents["pptx"]], "odp", tmp_path / "c"),
                 *libreoffice_convert([documents["pptx"]], "ppt", tmp_path / "c"),
                 *libreoffice_convert([documents["xlsx"]], "ods", tmp_path / "c"),
                 *libreoffice_convert([documents["xlsx"]], "xls", tmp_path / "c")]
    for path in converted:
        pieces = extract(path, "office", fingerprint(next(iter(discover([path])))), OPTIONS)
        words = {"odt": "penguins", "rtf": "penguins", "doc": "penguins", "odp": "Walrus", "ppt": "Walrus",
                 "ods": "Sledges", "xls": "Sledges"}[path.suffix[1:]]
        assert pieces and words in pieces[0].text, (path.name, pieces[0].text if pieces else None)
        assert all(p.source == str(path) and p.modality == "pdf_page" for p in pieces)


def test_without_libreoffice_office_files_are_skipped_with_the_install_line(home, documents, embedder_path,
                                                                           monkeypatch, tmp_path, capsys):
    from vlsearch.cli import main

    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    (documents["docx"].parent / "notes.txt").write_text("A plain note about seals.")
    code = main(["index", str(documents["docx"].parent), "-c", "plain", "--model", str(embedder_path),
                 "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "4 files: 1 new" in err and "3 skipped" in err and INSTALL in err, err
    assert list(Collection("plain").store.files()) == [str((documents["docx"].parent / "notes.txt").resolve())]


@needs_libreoffice
def test_a_document_that_hangs_or_crashes_libreoffice_fails_alone(home, documents, embedder_path, monkeypatch,
                                                                   tmp_path):
    """The program is a wrapper that hangs on one document, crashes on another, and runs LibreOffice
    for the rest (the wrapper sees the document through the conversion's link to it)."""
    wrapper = tmp_path / "soffice-wrapper"
    wrapper.write_text(f"""#!/bin/sh
for last; do :; done
case "$(readlink -f "$last")" in
  */hang.docx) exec sleep 600 ;;
  */crash.docx) kill -SEGV $$ ;;
esac
exec {shutil.which("soffice")} "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(PROGRAM_ENV, str(wrapper))
    folder = documents["docx"].parent
    shutil.copy(documents["docx"], folder / "hang.docx")
    shutil.copy(documents["docx"], folder / "crash.docx")
    os.remove(documents["pptx"])
    os.remove(documents["xlsx"])
    c = Collection("faulty", model=str(embedder_path))
    report = c.add([folder], options=ExtractOptions(max_pixels=256 * 256, office_timeout=8), workers=2)
    failed = {Path(s).name: reason for s, reason in report.failed}
    assert set(failed) == {"hang.docx", "crash.docx"}, report.summary()
    assert "did not finish converting it in 8 s" in failed["hang.docx"]
    assert "LibreOffice crashed converting it (SIGSEGV)" in failed["crash.docx"]
    assert {Path(s).name for s, e in c.store.files().items() if e.status == "done"} == {"plan.docx"}
