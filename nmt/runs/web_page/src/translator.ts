/**
 * The text side of translating in the browser: nmt/runtime/base.py's TranslatorBase. Lines
 * in, translations out in the same order: a line without tokens gives an empty translation,
 * an over-long one is cut to the model's source length, and every search asks for one
 * output token at least (the reason is in base.py).
 */

import { type ArrayModel, type Hypothesis, maxLength, type SearchOptions, searchBatch } from "./search";

/** A sentencepiece model: what the page needs of @sctg/sentencepiece-js's processor. */
export interface Pieces {
  encodeIds(text: string): number[];
  decodeIds(ids: number[]): string;
}

export interface Output {
  text: string;
  logProb: number;
  score: number;
  tokens: string[]; // target pieces, "</s>" last
  attention: number[][] | null; // (tokens.length, srcTokens.length), EOS included
}

export interface Translation {
  source: string;
  srcTokens: string[]; // source pieces, "</s>" last
  hypotheses: Output[];
}

/** Python's round(x, 6): what the Python translator reports. */
function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

export class Translator<E, S> {
  constructor(
    readonly model: ArrayModel<E, S>,
    readonly src: Pieces,
    readonly tgt: Pieces,
    readonly vocab: { src: string[]; tgt: string[] }, // every id's piece: the heatmap's labels
    readonly maxSrcLen: number,
    readonly maxPositions: number | null, // a Transformer's learned positions bound its output
  ) {}

  /** Translate `sentences`, in batches of at most `batchTokens` source tokens (rows x the
   * longest, EOS included); the batches change no result, the search is batch-invariant. */
  async translate(
    sentences: string[],
    options: SearchOptions,
    batchTokens = 4096,
  ): Promise<Translation[]> {
    const ids = sentences.map((s, i) => {
      const seq = this.src.encodeIds(s);
      if (seq.length > this.maxSrcLen) {
        console.warn(`line ${i + 1}: ${seq.length} tokens, truncated to the model's ${this.maxSrcLen}`);
        seq.length = this.maxSrcLen;
      }
      return seq;
    });
    const results: Translation[] = sentences.map((s) => ({ source: s, srcTokens: [], hypotheses: [] }));
    const searched = { ...options, minLen: Math.max(options.minLen, 1) };
    if (this.maxPositions !== null && ids.some((seq) => seq.length)) {
      // as the runtime's translator: refused, rather than positions the model never learned
      const lengths = ids.filter((seq) => seq.length).map((seq) => maxLength(seq.length + 1, searched));
      const longest = Math.max(...lengths);
      if (longest + 1 > this.maxPositions) {
        throw new Error(
          `a sequence of ${longest + 1} tokens is longer than the model's learned positions ` +
            `(model.max_positions ${this.maxPositions}); lower the length ratio or offset`,
        );
      }
    }
    // sorted by length, so that a batch pads little
    const todo = [...ids.keys()].filter((i) => ids[i].length).sort((a, b) => ids[a].length - ids[b].length);
    let start = 0;
    while (start < todo.length) {
      let end = start + 1;
      while (end < todo.length && (end - start + 1) * (ids[todo[end]].length + 1) <= batchTokens) end++;
      const batch = todo.slice(start, end);
      const found = await searchBatch(this.model, batch.map((i) => ids[i]), searched);
      batch.forEach((i, b) => {
        results[i] = {
          source: sentences[i],
          srcTokens: [...ids[i].map((id) => this.vocab.src[id]), "</s>"],
          hypotheses: found[b].map((h) => this.output(h, options.returnAttention)),
        };
      });
      start = end;
    }
    return results;
  }

  private output(hyp: Hypothesis, withAttention: boolean): Output {
    return {
      text: this.tgt.decodeIds(hyp.tokens),
      logProb: round6(hyp.logProb),
      score: round6(hyp.score),
      tokens: [...hyp.tokens.map((id) => this.vocab.tgt[id]), "</s>"],
      attention: withAttention && hyp.attention !== null ? hyp.attention.map((row) => Array.from(row)) : null,
    };
  }
}
