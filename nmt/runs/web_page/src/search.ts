/**
 * Greedy and beam search in the browser: nmt/runtime/search.py, rule for rule, over the
 * typed arrays onnxruntime-web returns. Read the two side by side: the functions, their
 * order and their variables have the same names (camelCase here), and the reasons for each
 * rule are given once, in nmt/search.py.
 *
 * Shapes: N sentences still active, K beam size, R = N * K rows, S source length, V vocab.
 * Arrays of shape (R, V) or (R, S) are flat, row-major.
 *
 * Numbers: numpy sums the log-probabilities in float32; `f32` (Math.fround) rounds every such
 * sum the same way, so that both searches rank the same candidates in the same order.
 */

export const PAD = 0;
export const BOS = 2;
export const EOS = 3;
const NEG_INF = -Infinity;
const f32 = Math.fround;

/** nmt/search_options.py's SearchOptions, already checked (the page checks its inputs). */
export interface SearchOptions {
  beamSize: number;
  nbest: number;
  lengthPenalty: number | "avg"; // GNMT alpha (0: raw log-probability) or "avg" per token
  maxLenRatio: number;
  maxLenOffset: number;
  minLen: number;
  stopping: "early" | "exact";
  returnAttention: boolean;
}

export const DEFAULT_OPTIONS: SearchOptions = {
  beamSize: 5,
  nbest: 1,
  lengthPenalty: 1.0,
  maxLenRatio: 1.5,
  maxLenOffset: 10,
  minLen: 0,
  stopping: "early",
  returnAttention: false,
};

export interface Hypothesis {
  tokens: number[]; // output ids, without BOS and EOS
  logProb: number; // model log-probability of tokens + EOS
  score: number; // logProb after length normalization (what beam search ranks by)
  attention: Float32Array[] | null; // len(tokens) + 1 rows of the source length incl. EOS
}

/** What the search needs from a model (model.ts: the exported graphs in onnxruntime-web). */
export interface ArrayModel<E, S> {
  /** src (N, S) incl. EOS, padded with PAD; srcLengths (N,) -> the encoded tensors, the state */
  encode(src: number[][], srcLengths: number[]): Promise<{ enc: E; state: S }>;
  /** prev (R,) -> log-probs (R, V), the next state, attention (R, S) or null */
  decodeStep(
    state: S,
    prev: number[],
    enc: E,
  ): Promise<{ logProbs: Float32Array; state: S; attention: Float32Array | null }>;
  selectState(state: S, rows: number[]): S;
  selectEncoded(enc: E, sentences: number[]): E;
}

/** SearchOptions.normalize: the length-normalized score; `length` counts the EOS. */
export function normalize(opts: SearchOptions, logProb: number, length: number): number {
  if (opts.lengthPenalty === "avg") return logProb / length;
  if (!opts.lengthPenalty) return logProb;
  return logProb / ((5.0 + length) / 6.0) ** opts.lengthPenalty;
}

/** search_options.max_length: a source of `srcLength` tokens incl. EOS -> the most output
 * tokens (EOS excluded), at least minLen and at least 1. */
export function maxLength(srcLength: number, opts: SearchOptions): number {
  const limit = Math.floor((srcLength - 1) * opts.maxLenRatio) + opts.maxLenOffset;
  return Math.max(limit, opts.minLen, 1);
}

/** Id sequences (EOS not included) -> src (N, S) with EOS, padded with PAD, lengths (N,). */
export function sourceArray(srcIds: number[][]): { src: number[][]; lengths: number[] } {
  const lengths = srcIds.map((s) => s.length + 1);
  const width = Math.max(...lengths);
  const src = srcIds.map((s) => [...s, EOS, ...new Array<number>(width - s.length - 1).fill(PAD)]);
  return { src, lengths };
}

/** In place: never PAD or BOS, no EOS before minLen, only EOS at max length (rows atMax). */
function maskSpecial(
  logProbs: Float32Array,
  vocab: number,
  step: number,
  minLen: number,
  atMax: boolean[],
): void {
  for (let r = 0; r < atMax.length; r++) {
    const row = logProbs.subarray(r * vocab, (r + 1) * vocab);
    row[PAD] = NEG_INF;
    row[BOS] = NEG_INF;
    if (step < minLen) row[EOS] = NEG_INF;
    if (atMax[r]) {
      const eos = row[EOS];
      row.fill(NEG_INF);
      row[EOS] = eos;
    }
  }
}

/** A hypothesis's attention rows cut to its sentence's source length. */
function trim(attention: Float32Array[] | null, srcLen: number): Float32Array[] | null {
  return attention === null ? null : attention.map((row) => row.slice(0, srcLen));
}

/** Row r of a flat (rows, width) array, copied. */
function row(values: Float32Array, width: number, r: number): Float32Array {
  return values.slice(r * width, (r + 1) * width);
}

/** The index of the first maximum, as numpy's argmax (and torch's max). */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let v = 1; v < values.length; v++) if (values[v] > values[best]) best = v;
  return best;
}

/** values[0..count) -> the k largest, best first (ties: lower index first), and their
 * indices: search.py's top_k on one row. One pass keeping a sorted list of k: an entry
 * enters only when strictly better than the last kept, so the lower index wins a tie. */
export function topK(
  count: number,
  value: (i: number) => number,
  k: number,
): { values: number[]; indices: number[] } {
  k = Math.min(k, count);
  const values: number[] = [];
  const indices: number[] = [];
  for (let i = 0; i < count; i++) {
    const v = value(i);
    if (values.length === k && !(v > values[k - 1])) continue;
    let at = values.length === k ? k - 1 : values.length;
    while (at > 0 && v > values[at - 1]) at--;
    values.splice(at, 0, v);
    indices.splice(at, 0, i);
    if (values.length > k) {
      values.pop();
      indices.pop();
    }
  }
  return { values, indices };
}

/** The most probable token at every step; one hypothesis per sentence. */
export async function greedy<E, S>(
  model: ArrayModel<E, S>,
  src: number[][],
  srcLengths: number[],
  opts: SearchOptions,
): Promise<Hypothesis[][]> {
  const batch = src.length;
  let { enc, state } = await model.encode(src, srcLengths);
  const limits = srcLengths.map((n) => maxLength(n, opts));
  let active = [...Array(batch).keys()]; // (N,) sentence of each row
  let prev: number[] = new Array(batch).fill(BOS);
  let logProb: number[] = new Array(batch).fill(0);
  let tokens: number[][] = active.map(() => []); // (N, t)
  let attn: Float32Array[][] | null = opts.returnAttention ? active.map(() => []) : null;
  const results: Hypothesis[][] = active.map(() => []);
  let step = 0;
  while (active.length) {
    const out = await model.decodeStep(state, prev, enc); // (N, V)
    const logProbs = out.logProbs;
    state = out.state;
    const vocab = logProbs.length / active.length;
    if (out.attention === null) attn = null;
    const atMax = active.map((s) => limits[s] <= step);
    maskSpecial(logProbs, vocab, step, opts.minLen, atMax);
    const best = active.map((_, r) => argmax(logProbs.subarray(r * vocab, (r + 1) * vocab)));
    const bestLp = best.map((t, r) => logProbs[r * vocab + t]);
    prev = best.map((t, r) => (atMax[r] ? EOS : t));
    // float32 sums, as the runtime's
    logProb = logProb.map((lp, r) => f32(lp + bestLp[r]));
    tokens = tokens.map((t, r) => [...t, prev[r]]);
    if (attn !== null) {
      const width = out.attention!.length / active.length;
      attn = attn.map((a, r) => [...a, row(out.attention!, width, r)]);
    }
    const ended = prev.flatMap((t, r) => (t === EOS ? [r] : []));
    for (const r of ended) {
      const sent = active[r];
      results[sent] = [
        {
          tokens: tokens[r].slice(0, -1),
          logProb: logProb[r],
          score: normalize(opts, logProb[r], step + 1),
          attention: trim(attn === null ? null : attn[r], srcLengths[sent]),
        },
      ];
    }
    if (ended.length) {
      const keep = prev.flatMap((t, r) => (t !== EOS ? [r] : []));
      active = keep.map((r) => active[r]);
      prev = keep.map((r) => prev[r]);
      logProb = keep.map((r) => logProb[r]);
      tokens = keep.map((r) => tokens[r]);
      state = model.selectState(state, keep);
      enc = model.selectEncoded(enc, keep);
      if (attn !== null) {
        const a = attn;
        attn = keep.map((r) => a[r]);
      }
    }
    step += 1;
  }
  return results;
}

/** Each sentence's best `k` finished hypotheses, best first, and the k-th best score. */
class Finished {
  hypotheses: Hypothesis[][];
  kthBest: number[]; // float32, as search.py's array

  constructor(
    batch: number,
    readonly k: number,
  ) {
    this.hypotheses = Array.from({ length: batch }, () => []);
    this.kthBest = new Array(batch).fill(NEG_INF);
  }

  add(sentence: number, hyp: Hypothesis): void {
    const hyps = this.hypotheses[sentence];
    hyps.push(hyp);
    hyps.sort((a, b) => b.score - a.score); // stable, as Python's sort
    hyps.splice(this.k);
    if (hyps.length === this.k) this.kthBest[sentence] = f32(hyps[hyps.length - 1].score);
  }
}

/** The bound a sentence's best open hypothesis can still reach, in float32 as numpy
 * computes it (a float32 array divided by a Python float is float32 arithmetic). */
function bound(opts: SearchOptions, bestOpen: number, endsAt: number): number {
  if (opts.lengthPenalty === "avg") return f32(bestOpen / endsAt);
  if (!opts.lengthPenalty) return bestOpen;
  const penalty =
    opts.stopping === "exact"
      ? // endsAt is a float32 array there: every operation of the penalty is float32
        f32(f32(f32(5.0 + endsAt) / 6.0) ** opts.lengthPenalty)
      : f32(((5.0 + endsAt) / 6.0) ** opts.lengthPenalty);
  return f32(bestOpen / penalty);
}

/** Beam search; for every sentence its `nbest` best hypotheses, best first. The rules (which
 * candidates may finish, when a sentence is done, stopping early or exact) are
 * nmt.search.beam_search's; read the reasons there. */
export async function beamSearch<E, S>(
  model: ArrayModel<E, S>,
  src: number[][],
  srcLengths: number[],
  opts: SearchOptions,
): Promise<Hypothesis[][]> {
  const k = opts.beamSize;
  const batch = src.length;
  let { enc, state } = await model.encode(src, srcLengths);
  const limits = srcLengths.map((n) => maxLength(n, opts));
  let active = [...Array(batch).keys()];
  let width = 1; // rows a sentence: 1 at the first step (every beam starts from BOS), then K
  let beamLp: number[] = new Array(batch).fill(0); // (R,) float32
  let prev: number[] = new Array(batch).fill(BOS);
  let history: number[][] = active.map(() => []); // (R, t)
  let attnHistory: Float32Array[][] | null = opts.returnAttention ? active.map(() => []) : null;
  const finished = new Finished(batch, k);
  let step = 0;
  while (active.length) {
    const n = active.length;
    const out = await model.decodeStep(state, prev, enc); // (R, V)
    const logProbs = out.logProbs;
    const weights = out.attention;
    state = out.state;
    if (weights === null) attnHistory = null;
    const vocab = logProbs.length / (n * width);
    const srcWidth = weights === null ? 0 : weights.length / (n * width);
    const atMax = active.flatMap((s) => new Array<boolean>(width).fill(limits[s] <= step));
    maskSpecial(logProbs, vocab, step, opts.minLen, atMax);
    const nextLp: number[][] = []; // (N, K)
    const nextRows: number[] = []; // (R,) the row each next hypothesis extends
    const nextTok: number[] = [];
    for (let i = 0; i < n; i++) {
      // the sentence's 2K best extensions: scores, rows of R, tokens (search.py's
      // top_candidates_reference, the plain form its block maxima are tested against)
      const sums = (index: number): number => {
        const r = i * width + Math.floor(index / vocab);
        return f32(beamLp[r] + logProbs[r * vocab + (index % vocab)]);
      };
      const top = topK(width * vocab, sums, 2 * k);
      const topRow = top.indices.map((index) => i * width + Math.floor(index / vocab));
      const topTok = top.indices.map((index) => index % vocab);
      const isEos = topTok.map((t) => t === EOS);
      for (let j = 0; j < Math.min(k, top.values.length); j++) {
        if (!isEos[j] || !(top.values[j] > NEG_INF)) continue;
        const r = topRow[j];
        const lp = top.values[j];
        const sent = active[i];
        let hypAttn: Float32Array[] | null = null;
        if (attnHistory !== null) {
          hypAttn = trim([...attnHistory[r], row(weights!, srcWidth, r)], srcLengths[sent]);
        }
        finished.add(sent, {
          tokens: history[r],
          logProb: lp,
          score: normalize(opts, lp, step + 1),
          attention: hypAttn,
        });
      }
      const openLp = top.values.map((v, j) => (isEos[j] ? NEG_INF : v));
      const picked = topK(openLp.length, (j) => openLp[j], k);
      nextLp.push(picked.values);
      for (const j of picked.indices) {
        nextRows.push(topRow[j]);
        nextTok.push(topTok[j]);
      }
    }
    const endsAt = (s: number): number => (opts.stopping === "exact" ? limits[s] + 1 : step + 2.0);
    const remaining: number[] = []; // (N',)
    for (let i = 0; i < n; i++) {
      const bestOpen = nextLp[i][0];
      const done =
        finished.kthBest[active[i]] >= bound(opts, bestOpen, endsAt(active[i])) ||
        bestOpen === NEG_INF ||
        limits[active[i]] <= step;
      if (!done) remaining.push(i);
    }
    width = nextLp[0].length;
    const remainingRows = remaining.flatMap((i) => [...Array(width).keys()].map((w) => i * width + w));
    const srcRows = remainingRows.map((r) => nextRows[r]);
    state = model.selectState(state, srcRows);
    if (remaining.length < n) enc = model.selectEncoded(enc, remaining);
    history = remainingRows.map((r) => [...history[nextRows[r]], nextTok[r]]);
    if (attnHistory !== null) {
      const h = attnHistory;
      attnHistory = srcRows.map((r) => [...h[r], row(weights!, srcWidth, r)]);
    }
    beamLp = remainingRows.map((r) => nextLp[Math.floor(r / width)][r % width]);
    prev = remainingRows.map((r) => nextTok[r]);
    active = remaining.map((i) => active[i]);
    step += 1;
  }
  return finished.hypotheses.map((hyps) => hyps.slice(0, opts.nbest));
}

/** One batch of id sequences (EOS not included) -> their hypotheses: greedy for beam size 1,
 * beam search otherwise. */
export function searchBatch<E, S>(
  model: ArrayModel<E, S>,
  srcIds: number[][],
  opts: SearchOptions,
): Promise<Hypothesis[][]> {
  const { src, lengths } = sourceArray(srcIds);
  if (opts.beamSize === 1) return greedy(model, src, lengths, opts);
  return beamSearch(model, src, lengths, opts);
}
