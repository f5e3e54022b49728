"""Office documents (docx, pptx, xlsx, odt, odp, ods, rtf, doc, ppt, xls) rendered to PDF by LibreOffice.

Each conversion runs ``soffice --headless --convert-to pdf`` in a new temporary folder with its own
LibreOffice profile (``-env:UserInstallation``), so conversions running side by side in the decoding
workers never share a profile or a lock, in its own process group, with a timeout: a document that
hangs or crashes LibreOffice is killed with its whole group and fails alone, naming the reason. The
PDF is then indexed page by page, with its text layer, like any PDF.

A conversion never reaches outside the document: the profile turns off macros, link updates, recalculation
on load and the loading of anything a document links to (pictures, OLE objects, templates, sections, by
``http:`` or ``file:`` URL), and LibreOffice runs in a new, empty network namespace (``unshare --net``)
where the platform allows one, so even a link the settings miss finds no network.

The program is ``$VLSEARCH_SOFFICE`` when set, else ``soffice`` or ``libreoffice`` on the ``PATH``.
Each process keeps its last PDFs (by the document's content hash, 32 MiB at most), so reranking
several pages of one document converts it once.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from ..errors import MediaError
from ..media.images import MediaLimits, NamedFile, describe
from .entries import content_hash

__all__ = ["INSTALL", "soffice", "missing_reason", "to_pdf", "PROGRAM_ENV", "no_network_prefix"]

log = logging.getLogger("vlsearch.office")

PROGRAM_ENV = "VLSEARCH_SOFFICE"
#: the Debian/Ubuntu packages that convert text documents, spreadsheets and presentations
INSTALL = "apt-get install -y libreoffice-core libreoffice-writer libreoffice-calc libreoffice-impress"


def soffice() -> str | None:
    """The LibreOffice program to run, or ``None`` when it is not installed."""
    given = os.environ.get(PROGRAM_ENV)
    if given:
        return shutil.which(given)
    return shutil.which("soffice") or shutil.which("libreoffice")


def missing_reason() -> str:
    """Why Office documents cannot be read here, with the exact install line."""
    return f"LibreOffice is not installed (needed for Office documents): {INSTALL}"


def to_pdf(src: str | NamedFile, timeout: float = 120.0, limits: MediaLimits | None = None) -> bytes:
    """The PDF LibreOffice renders of a document (a local path, or a ``NamedFile`` copy of one).

    Raises:
        MediaError: LibreOffice is missing, crashed, timed out, or made no PDF (the message names
            the document, never the temporary copy).

    Example:
        >>> pdf = to_pdf("slides.pptx", timeout=60)
    """
    limits = limits or MediaLimits()
    name = describe(src)
    program = soffice()
    if program is None:
        raise MediaError(f"{name}: {missing_reason()}")
    path = Path(src.data if isinstance(src, NamedFile) else src)  # type: ignore[arg-type]
    source_name = src.name if isinstance(src, NamedFile) else str(src)
    key = f"{content_hash(path)}{os.path.splitext(source_name)[1].lower()}"
    with _lock:
        if key in _converted:
            _converted.move_to_end(key)
            return _converted[key]
    pdf = _convert(program, path, source_name, name, timeout, limits)
    with _lock:
        _converted[key] = pdf
        while sum(map(len, _converted.values())) > _KEEP_BYTES and len(_converted) > 1:
            _converted.popitem(last=False)
    return pdf


_KEEP_BYTES = 32 << 20
_converted: OrderedDict[str, bytes] = OrderedDict()  # the document's hash and suffix -> its PDF
_lock = threading.Lock()


#: the private profile's settings (keys of LibreOffice's Common.xcs, Writer.xcs and Calc.xcs): no macros, no
#: active content, links never updated, pictures and objects linked from the document never loaded
#: (BlockUntrustedRefererLinks: a document outside the trusted locations, as every converted one is, may not
#: make LibreOffice fetch what it links to), and formulas kept as saved rather than recalculated on load
#: (no WEBSERVICE call). DisableActiveContent exists in newer LibreOffice only; older ones ignore it.
_SETTINGS = {
    "/org.openoffice.Office.Common/Security/Scripting": {
        "BlockUntrustedRefererLinks": "true", "DisableActiveContent": "true", "DisableMacrosExecution": "true",
        "MacroSecurityLevel": "3"},
    "/org.openoffice.Office.Writer/Content/Update": {"Link": "0", "Field": "false", "Chart": "false"},  # 0: never
    "/org.openoffice.Office.Calc/Content/Update": {"Link": "1"},  # 1: never
    "/org.openoffice.Office.Calc/Formula/Load": {"OOXMLRecalcMode": "1", "ODFRecalcMode": "1"},  # 1: never
}
PROFILE_SETTINGS = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<oor:items xmlns:oor="http://openoffice.org/2001/registry">\n'
                    + "".join(f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse" oor:finalized="true">'
                              f"<value>{value}</value></prop></item>\n"
                              for path, props in _SETTINGS.items() for name, value in props.items())
                    + "</oor:items>\n")

#: ways to start a program inside a new, empty network namespace, tried in order: as root (or with
#: CAP_SYS_ADMIN), then as an unprivileged user through a user namespace
_NO_NETWORK = (("unshare", "--net"), ("unshare", "--net", "--map-root-user"))


def _converter_environment() -> dict[str, str]:
    """The environment LibreOffice gets: this process's, less vlsearch's own (API keys, the resident
    server's identity secret), which a converter never needs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VLSEARCH_")}


@functools.cache
def no_network_prefix() -> tuple[str, ...]:
    """The command prefix that runs LibreOffice with no network at all, or ``()`` where the platform
    allows none (then the profile's settings alone keep links unfetched). Found once per process."""
    for prefix in _NO_NETWORK:
        if shutil.which(prefix[0]) is None:
            continue
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            continue
    log.warning("no network namespace can be made here (unshare): LibreOffice converts with the network "
                "reachable, kept from linked resources by its profile's settings only")
    return ()


def _convert(program: str, path: Path, source_name: str, name: str, timeout: float, limits: MediaLimits) -> bytes:
    """One run of LibreOffice in a private folder and profile."""
    suffix = os.path.splitext(source_name)[1].lower()  # LibreOffice picks its import filter by it
    with tempfile.TemporaryDirectory(prefix="vlsearch-office-") as work:
        document = Path(work, "document" + suffix)
        try:
            os.symlink(os.path.abspath(path), document)
        except OSError:
            shutil.copyfile(path, document)
        out = Path(work, "out")
        profile = Path(work, "profile")
        (profile / "user").mkdir(parents=True)
        (profile / "user" / "registrymodifications.xcu").write_text(PROFILE_SETTINGS, encoding="utf-8")
        command = [*no_network_prefix(), program, "--headless", "--invisible", "--norestore", "--nolockcheck",
                   "--nodefault", "--nologo", f"-env:UserInstallation={profile.as_uri()}",
                   "--convert-to", "pdf", "--outdir", str(out), str(document)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
                                   env={**_converter_environment(), "SAL_USE_VCLPLUGIN": "svp"})
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MediaError(f"{name}: LibreOffice did not finish converting it in {timeout:g} s "
                             "(killed; a document that hangs LibreOffice)") from None
        finally:
            _kill_group(process)  # helpers it may have left behind
        if process.returncode < 0:
            raise MediaError(f"{name}: LibreOffice crashed converting it "
                             f"({signal.Signals(-process.returncode).name})")
        pdf = out / "document.pdf"
        if process.returncode != 0 or not pdf.is_file():
            said = _last_line(output)
            raise MediaError(f"{name}: LibreOffice could not convert it to PDF (exit status {process.returncode}"
                             f"{'; ' + said if said else ''}; corrupt, password-protected or not that format?)")
        size = pdf.stat().st_size
        if size > limits.max_file_bytes:
            raise MediaError(f"{name}: its PDF has {size} bytes, larger than {limits.max_file_bytes}")
        return pdf.read_bytes()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _last_line(output: bytes | None) -> str:
    lines = [line.strip() for line in (output or b"").decode("utf-8", "replace").splitlines()
             if line.strip() and "javaldx" not in line]
    return lines[-1][:200] if lines else ""
