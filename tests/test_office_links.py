"""Office conversion never reaches out: documents whose pictures, objects, templates, fields and formulas point
at a canary HTTP server on loopback are converted, and the canary hears nothing. Real documents: written by
python-docx, python-pptx and openpyxl (a picture's relationship then made external), and an .odt by hand."""

from __future__ import annotations

import io
import re
import shutil
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from vlsearch.ingest import office

pytestmark = pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


class _Canary(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.heard.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = _png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PROPFIND = do_OPTIONS = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def canary() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback: its base URL, and the requests it heard."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    server.heard = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.heard  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def _rewrite(path: Path, change: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None) -> Path:
    """Rewrite an OOXML/ODF zip in place: each part through ``change`` (None drops it), ``extra`` added."""
    with zipfile.ZipFile(path) as source:
        parts = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in parts:
            changed = change(info.filename, data)
            if changed is not None:
                out.writestr(info, changed)
        for name, data in (extra or {}).items():
            out.writestr(name, data)
    return path


def _link_pictures(path: Path, url: str) -> Path:
    """Make every picture of an OOXML file a linked one: its relationship external (``TargetMode="External"``,
    pointing at ``url``), the ``a:blip`` referring to it by ``r:link``, the embedded copy gone."""
    def change(name: str, data: bytes) -> bytes | None:
        if "/media/" in name:
            return None
        if not name.endswith((".rels", ".xml")):
            return data
        text = data.decode("utf-8")
        if name.endswith(".rels"):
            text = re.sub(r'(Type="[^"]*/image") Target="[^"]*"', rf'\1 Target="{url}" TargetMode="External"', text)
        else:
            text = text.replace("r:embed=", "r:link=")
        return text.encode("utf-8")

    return _rewrite(path, change)


def write_docx(path: Path, base: str) -> Path:
    """A .docx with a linked picture, a remote template, an INCLUDEPICTURE and an INCLUDETEXT field."""
    import docx

    document = docx.Document()
    document.add_paragraph("A document that links out.")
    document.add_picture(io.BytesIO(_png()))
    for instruction in (f'INCLUDEPICTURE "{base}/docx-includepicture.png" \\d',
                        f'INCLUDETEXT "{base}/docx-includetext.docx"'):
        document.add_paragraph()._p.append(docx.oxml.parse_xml(
            f'<w:fldSimple {docx.oxml.ns.nsdecls("w")} w:instr=\'{instruction}\'>'
            f'<w:r><w:t>field</w:t></w:r></w:fldSimple>'))
    document.save(str(path))
    _link_pictures(path, f"{base}/docx-linked-picture.png")
    template = ('<Relationship Id="rIdTemplate" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                f'relationships/attachedTemplate" Target="{base}/docx-template.dotx" TargetMode="External"/>')

    def attach_template(name: str, data: bytes) -> bytes:
        if name not in ("word/settings.xml", "word/_rels/settings.xml.rels"):
            return data
        text = data.decode("utf-8")
        if name == "word/settings.xml":
            text = re.sub(r"(<w:settings[^>]*>)", r'\1<w:attachedTemplate r:id="rIdTemplate"/>', text, count=1)
        elif name == "word/_rels/settings.xml.rels":
            text = text.replace("</Relationships>", template + "</Relationships>")
        return text.encode("utf-8")

    with zipfile.ZipFile(path) as z:
        has_rels = "word/_rels/settings.xml.rels" in z.namelist()
    rels = {} if has_rels else {"word/_rels/settings.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.'
        f'openxmlformats.org/package/2006/relationships">{template}</Relationships>').encode()}
    return _rewrite(path, attach_template, rels)


def write_pptx(path: Path, base: str) -> Path:
    """A .pptx whose slide shows a linked picture."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "A deck that links out"
    slide.shapes.add_picture(io.BytesIO(_png()), Inches(1), Inches(2))
    deck.save(str(path))
    return _link_pictures(path, f"{base}/pptx-linked-picture.png")


def write_xlsx(path: Path, base: str) -> Path:
    """An .xlsx with a linked picture and a WEBSERVICE formula."""
    import openpyxl
    from openpyxl.drawing.image import Image as SheetImage

    book = openpyxl.Workbook()
    sheet = book.active
    sheet["A1"] = "A sheet that links out"
    sheet["A2"] = f'=WEBSERVICE("{base}/xlsx-webservice")'
    sheet.add_image(SheetImage(io.BytesIO(_png())), "C3")
    book.save(str(path))
    return _link_pictures(path, f"{base}/xlsx-linked-picture.png")


def write_odt(path: Path, base: str) -> Path:
    """An .odt with a linked image, a linked OLE object and a linked section."""
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
          'xmlns:xlink="http://www.w3.org/1999/xlink"')
    frame = '<draw:frame text:anchor-type="paragraph" svg:width="2cm" svg:height="2cm">{}</draw:frame>'
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2"><office:body>'
        '<office:text><text:p>A document that links out.</text:p><text:p>'
        + frame.format(f'<draw:image xlink:href="{base}/odt-linked-image.png" xlink:type="simple" '
                       'xlink:show="embed" xlink:actuate="onLoad"/>')
        + frame.format(f'<draw:object xlink:href="{base}/odt-linked-object" xlink:type="simple" '
                       'xlink:show="embed" xlink:actuate="onLoad"/>')
        + '</text:p><text:section text:name="linked">'
        f'<text:section-source xlink:href="{base}/odt-linked-section.odt" xlink:type="simple"/>'
        '<text:p>section</text:p></text:section></office:text></office:body></office:document-content>')
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
                'opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.text"/><manifest:file-entry '
                'manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>')
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        out.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        out.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


WRITERS = {"docx": write_docx, "odt": write_odt, "pptx": write_pptx, "xlsx": write_xlsx}


def _fetches_nothing(tmp_path: Path, kind: str) -> None:
    with canary() as (base, heard):
        pdf = office.to_pdf(WRITERS[kind](tmp_path / f"links.{kind}", base), timeout=90)
    assert pdf.startswith(b"%PDF")
    assert heard == [], f"converting the {kind} made LibreOffice fetch {heard}"


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_conversion_fetches_nothing_a_document_links_to(tmp_path, kind):
    _fetches_nothing(tmp_path, kind)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_the_profile_alone_fetches_nothing(tmp_path, kind, monkeypatch):
    """Where no network namespace can be made, the private profile's settings still keep links unfetched."""
    monkeypatch.setattr(office, "no_network_prefix", lambda: ())
    _fetches_nothing(tmp_path, kind)


@pytest.mark.skipif(office.no_network_prefix() == (), reason="no network namespace can be made here")
@pytest.mark.parametrize("kind", ["docx", "odt"])
def test_the_network_namespace_alone_fetches_nothing(tmp_path, kind, monkeypatch):
    monkeypatch.setattr(office, "PROFILE_SETTINGS", EMPTY_PROFILE)
    _fetches_nothing(tmp_path, kind)


EMPTY_PROFILE = '<?xml version="1.0"?><oor:items xmlns:oor="http://openoffice.org/2001/registry"></oor:items>'


@pytest.mark.parametrize("kind", ["docx", "odt"])
def test_conversion_reads_no_local_file_a_document_links_to(tmp_path, kind):
    """A picture linked by a file: URL (outside the document) is not drawn: the page shows none of its red."""
    import pypdfium2

    outside = tmp_path / "outside"
    outside.mkdir()
    for name in (f"{kind}-linked-picture.png", "odt-linked-image.png"):
        (outside / name).write_bytes(_png())
    pdf = office.to_pdf(WRITERS[kind](tmp_path / f"local.{kind}", outside.as_uri()), timeout=90)
    page = np.asarray(pypdfium2.PdfDocument(pdf)[0].render(scale=1).to_pil().convert("RGB")).astype(int)
    red = (page[..., 0] > 200) & (page[..., 1] < 60) & (page[..., 2] < 60)
    assert red.sum() == 0, f"the {kind}'s page shows a linked local picture ({red.sum()} red pixels)"
