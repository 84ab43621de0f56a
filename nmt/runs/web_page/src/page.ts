/**
 * The page of `nmt export --format web`: loads the exported folder it sits in (with a
 * progress bar), then translates in the browser, as the page of `nmt serve` does on the
 * server: translation, n-best list, the attention heatmap with the weight under the pointer.
 *
 * `window.nmt` is what scripts (the tests, tools/bench_web.py) drive: `ready` (a promise of
 * the load) and `translate(sentences, options)`.
 */

import * as ort from "onnxruntime-web/wasm";
import { SentencePieceProcessor } from "@sctg/sentencepiece-js";
import { type Graphs, OnnxModel } from "./model";
import { DEFAULT_OPTIONS, type SearchOptions } from "./search";
import { type Pieces, type Translation, Translator } from "./translator";

/** page.json, written by nmt/runs/web.py: the files to load and every id's piece. */
interface PageInfo {
  files: Record<string, number>; // name -> bytes, for the progress bar
  joint: boolean; // one sentencepiece model for both sides (no tgt.model)
  pieces: { src: string[]; tgt: string[] };
}

const WASM = "ort-wasm-simd-threaded.wasm";
const $ = (id: string) => document.getElementById(id)!;

/** Fetch every file, reporting the bytes read so far of all of them together. */
async function fetchAll(
  files: Record<string, number>,
  progress: (done: number, total: number) => void,
): Promise<Record<string, ArrayBuffer>> {
  const total = Object.values(files).reduce((a, b) => a + b, 0);
  let done = 0;
  const read = async (name: string): Promise<[string, ArrayBuffer]> => {
    const response = await fetch(name);
    if (!response.ok || response.body === null) {
      throw new Error(`${name}: ${response.status} ${response.statusText}`);
    }
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      chunks.push(value);
      done += value.length;
      progress(done, total);
    }
    const bytes = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    return [name, bytes.buffer];
  };
  return Object.fromEntries(await Promise.all(Object.keys(files).map(read)));
}

async function sentencepiece(model: ArrayBuffer): Promise<Pieces> {
  const processor = new SentencePieceProcessor();
  // the package's own loaders take a file path (node) or base64 text; its private loader
  // takes the bytes we already have
  const loader = processor as unknown as { _loadModel(bytes: Uint8Array): Promise<void> };
  await loader._loadModel(new Uint8Array(model));
  // its types say Int32Array for decodeIds; its code takes any array of numbers
  return processor as unknown as Pieces;
}

/** When each stage of the load ended, in ms since the navigation started (the benchmark
 * prints them). */
const timings: Record<string, number> = {};
(globalThis as unknown as { nmtTimings: Record<string, number> }).nmtTimings = timings;

async function load(): Promise<Translator<ort.Tensor[], ort.Tensor[]>> {
  const bar = $("progress") as HTMLProgressElement;
  const json = async (name: string) => {
    const response = await fetch(name);
    if (!response.ok) throw new Error(`${name}: ${response.status} ${response.statusText}`);
    return response.json();
  };
  const [info, manifest]: [PageInfo, { graphs: Graphs; max_src_len: number; max_positions: number | null }] =
    await Promise.all([json("page.json"), json("model.json")]);
  const files = await fetchAll(info.files, (done, total) => {
    bar.max = total;
    bar.value = done;
    const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
    $("status").textContent = `loading the model: ${mb(done)} of ${mb(total)} MB`;
  });
  timings.fetched = performance.now();
  $("status").textContent = "starting the model";
  ort.env.wasm.wasmBinary = files[WASM];
  // threads need a cross-origin isolated page (headers a plain static server does not send)
  if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;
  // the two WebAssembly modules start side by side: each compiles while the other waits
  const [model, src, tgt] = await Promise.all([
    OnnxModel.load(files["encoder.onnx"], files["decoder.onnx"], manifest.graphs).then((m) => {
      timings.graphs = performance.now();
      return m;
    }),
    sentencepiece(files["src.model"]),
    info.joint ? null : sentencepiece(files["tgt.model"]),
  ]);
  timings.tokenizer = performance.now();
  return new Translator(model, src, tgt ?? src, info.pieces, manifest.max_src_len, manifest.max_positions);
}

// -- the page: as nmt/serving/static/index.html --------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
const CELL = 28;

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function textWidth(labels: string[]): number {
  return 8 * Math.max(1, ...labels.map((s) => s.length)) + 12;
}

/** One <g class="row"> per output piece, one rect per input piece; hover shows the weight. */
function drawHeatmap(svg: Element, src: string[], tgt: string[], w: number[][]): void {
  svg.replaceChildren();
  const left = textWidth(tgt);
  const top = textWidth(src) * 0.75;
  svg.setAttribute("width", String(left + CELL * src.length + 10));
  svg.setAttribute("height", String(top + CELL * tgt.length + 10));
  src.forEach((s, j) => {
    const x = left + CELL * j + CELL / 2;
    const y = top - 6;
    svg.appendChild(el("text", { x, y, transform: `rotate(-50 ${x} ${y})`, class: "src" }, s));
  });
  const info = $("weight");
  tgt.forEach((t, i) => {
    const row = el("g", { class: "row", "data-piece": t });
    row.appendChild(el("text", { x: left - 6, y: top + CELL * i + CELL * 0.65, "text-anchor": "end" }, t));
    src.forEach((s, j) => {
      const v = (w[i] || [])[j] || 0;
      const cell = el("rect", {
        class: "cell",
        x: left + CELL * j,
        y: top + CELL * i,
        width: CELL - 1,
        height: CELL - 1,
        fill: `rgba(31, 90, 200, ${Math.max(0.03, v)})`,
        "data-weight": v,
      });
      cell.appendChild(el("title", {}, `${t} \u2192 ${s}: ${v.toFixed(4)}`));
      cell.addEventListener("mouseenter", () => {
        info.textContent = `${t} \u2192 ${s}: ${v.toFixed(4)}`;
      });
      row.appendChild(cell);
    });
    svg.appendChild(row);
  });
}

function show(t: Translation): void {
  $("translation").textContent = t.hypotheses.length ? t.hypotheses[0].text : "";
  const list = $("nbest");
  list.replaceChildren();
  for (const h of t.hypotheses) {
    const li = document.createElement("li");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = h.text;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = h.score.toFixed(4);
    li.append(text, score);
    list.appendChild(li);
  }
  $("weight").textContent = "";
  const best = t.hypotheses[0];
  drawHeatmap($("heatmap"), t.srcTokens, best ? best.tokens : [], best?.attention ?? []);
}

/** The page's inputs as search options; one clear line for a bad one. */
function pageOptions(): SearchOptions {
  const beamSize = Number(($("beam") as HTMLInputElement).value);
  const nbest = Number(($("nbest-size") as HTMLInputElement).value);
  if (!Number.isInteger(beamSize) || beamSize < 1 || beamSize > 1000) {
    throw new Error("beam size must be a whole number from 1 to 1000");
  }
  if (!Number.isInteger(nbest) || nbest < 1 || nbest > beamSize) {
    throw new Error(`n-best must be a whole number from 1 to the beam size (${beamSize})`);
  }
  return { ...DEFAULT_OPTIONS, beamSize, nbest, returnAttention: true };
}

const ready = load();
const nmt = {
  ready: ready.then(() => true),
  timings,
  /** sentences in, translations out; options: any of SearchOptions's fields */
  async translate(sentences: string[], options: Partial<SearchOptions> = {}): Promise<Translation[]> {
    return (await ready).translate(sentences, { ...DEFAULT_OPTIONS, ...options });
  },
};
(window as unknown as { nmt: typeof nmt }).nmt = nmt;

ready.then(
  () => {
    $("status").textContent = "ready: translating here, in your browser (nothing leaves it)";
    $("progress").hidden = true;
    ($("go") as HTMLButtonElement).disabled = false;
    document.body.dataset.state = "ready";
  },
  (e: unknown) => {
    $("status").textContent = "";
    $("error").textContent = `the model did not load: ${e instanceof Error ? e.message : String(e)}`;
    document.body.dataset.state = "error";
  },
);

async function translate(): Promise<void> {
  const error = $("error");
  error.textContent = "";
  try {
    const [t] = await nmt.translate([($("source") as HTMLTextAreaElement).value], pageOptions());
    show(t);
  } catch (e) {
    error.textContent = e instanceof Error ? e.message : String(e);
  }
}

$("go").addEventListener("click", translate);
$("source").addEventListener("keydown", (e) => {
  if ((e as KeyboardEvent).key === "Enter" && !(e as KeyboardEvent).shiftKey) {
    e.preventDefault();
    translate();
  }
});
