"""A checkpoint as a static web page that translates in the browser, with no server: the
folder `nmt export --format web` writes.

    index.html, nmt-web.js    the page and its script: onnxruntime-web, a sentencepiece port
                              and the search of nmt/runtime/search.py in TypeScript
                              (web_page/src/), bundled by esbuild, nothing from a CDN
    ort-wasm-simd-threaded.wasm   onnxruntime-web's WebAssembly binary
    page.json                 the files the page loads (with their sizes, for its progress
                              bar) and every id's sentencepiece piece (the heatmap's labels)
    model.json, *.onnx, *.model   the ONNX export (nmt/runtime/folder.py), unchanged: `nmt
                              translate DIR` runs the same folder with the Python runtime

The script is built from web_page/ by `make web` (npm ci, then esbuild), pinned by its
package-lock.json; it is not committed (onnxruntime-web's binary alone is 15 MB).
Browsers refuse WebAssembly on pages opened from a file: the folder is served over http.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from nmt import NmtError
from nmt.files import check_dir, fsync_dir
from nmt.runs.graphs import GraphExport, export_onnx
from nmt.runtime import folder

PAGE_SOURCES = Path(__file__).parent / "web_page"
BUNDLE = PAGE_SOURCES / "dist"
# what `make web` leaves in BUNDLE; .built is written last, so a build cut short lacks it
BUILT = ".built"
PAGE, SCRIPT, WASM = "index.html", "nmt-web.js", "ort-wasm-simd-threaded.wasm"
BUNDLE_FILES = (PAGE, SCRIPT, f"{SCRIPT}.LEGAL.txt", WASM)
PAGE_INFO = "page.json"


def bundle() -> Path:
    """The built script's folder; one clear error when `make web` has not built it."""
    if not (BUNDLE / BUILT).is_file() or not all((BUNDLE / f).is_file() for f in BUNDLE_FILES):
        raise NmtError(
            "the web page's script is not built: run `make web` in nmt's source folder "
            "(npm ci and esbuild, in nmt/runs/web_page)"
        )
    return BUNDLE


def is_web_export(path: str | Path) -> bool:
    return folder.is_export(path) and (Path(path) / PAGE_INFO).is_file()


def serve_command(out: Path) -> str:
    """How to open the page: over http, as browsers refuse WebAssembly from file://."""
    return f"python -m http.server --directory {out} 8000, then open http://localhost:8000/"


def export_web(
    checkpoint: str | Path, out: str | Path, *, precision: str = "float32"
) -> GraphExport:
    """Write the page of `checkpoint` to the folder `out`: made beside it and renamed into
    place, so a folder at `out` is always whole. A web export already at `out` is replaced;
    anything else there but an empty folder is refused."""
    out = Path(out)
    built = bundle()  # before any work: the graphs take seconds to trace
    if out.exists() and not is_web_export(out) and (not out.is_dir() or any(out.iterdir())):
        raise NmtError(f"-o {out} exists and is not a web export: choose another -o")
    parent = out.parent if str(out.parent) else Path(".")
    check_dir(parent, "-o")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        graphs = tmp / "graphs"
        export_onnx(checkpoint, graphs, precision=precision)
        for f in graphs.iterdir():
            os.replace(f, tmp / f.name)
        graphs.rmdir()
        for name in BUNDLE_FILES:
            shutil.copyfile(built / name, tmp / name)
        tok = folder.read_tokenizer(tmp)
        models = [folder.SRC_MODEL] + ([] if tok.joint else [folder.TGT_MODEL])
        loaded = [WASM, folder.ENCODER, folder.DECODER, *models]
        info = {
            "files": {name: (tmp / name).stat().st_size for name in loaded},
            "joint": tok.joint,
            "pieces": {
                "src": tok.src_pieces(list(range(tok.src_vocab_size))),
                "tgt": tok.tgt_pieces(list(range(tok.tgt_vocab_size))),
            },
        }
        (tmp / PAGE_INFO).write_text(json.dumps(info, ensure_ascii=False) + "\n", "utf-8")
        size = sum(f.stat().st_size for f in tmp.iterdir())
        os.chmod(tmp, 0o755)
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GraphExport(out, size, precision)


def _replace(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`; an export already there is moved aside first
    and removed after, so that `out` is either the old page or the new one."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    fsync_dir(out.parent if str(out.parent) else Path("."))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
