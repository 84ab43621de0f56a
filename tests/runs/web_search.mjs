// The web page's search (nmt/runs/web_page/src/search.ts, built to dist/search.mjs) on a
// scripted model, for tests/runs/test_web.py: JSON in on stdin, JSON out on stdout.
// usage: node web_search.mjs DIST/search.mjs < cases.json
import { readFileSync } from "node:fs";

const { searchBatch } = await import(process.argv[2]);
const { table, steps, vocab, cases } = JSON.parse(readFileSync(0, "utf-8"));
// log-probabilities (sentence, step, previous token) -> (vocab,), float32, flat; -inf came
// as null (JSON has no infinities)
const logits = Float32Array.from(table, (v) => (v === null ? -Infinity : v));

// the state of a row: its sentence and its step; the encoded tensors: the sentences
const model = {
  async encode(src) {
    const rows = src.map((_, i) => i);
    return { enc: rows, state: { sent: rows, step: rows.map(() => 0) } };
  },
  async decodeStep(state, prev) {
    const logProbs = new Float32Array(prev.length * vocab);
    prev.forEach((token, r) => {
      const at = ((state.sent[r] * steps + Math.min(state.step[r], steps - 1)) * vocab + token) * vocab;
      logProbs.set(logits.subarray(at, at + vocab), r * vocab);
    });
    return { logProbs, state: { sent: state.sent, step: state.step.map((s) => s + 1) }, attention: null };
  },
  selectState(state, rows) {
    return { sent: rows.map((r) => state.sent[r]), step: rows.map((r) => state.step[r]) };
  },
  selectEncoded(enc, sentences) {
    return sentences.map((s) => enc[s]);
  },
};

const results = [];
for (const { sources, options } of cases) {
  const found = await searchBatch(model, sources, options);
  results.push(found.map((hyps) => hyps.map((h) => ({ tokens: h.tokens, logProb: h.logProb, score: h.score }))));
}
process.stdout.write(JSON.stringify(results));
