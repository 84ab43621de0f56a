/**
 * An exported model's graphs in onnxruntime-web, with the interface the search reads
 * (search.ts): nmt/runtime/model.py's OnnxModel in the browser. The folder's layout and the
 * graphs' inputs and outputs are defined once, in nmt/runtime/folder.py.
 */

import * as ort from "onnxruntime-web/wasm";
import type { ArrayModel } from "./search";

/** model.json's `graphs`: the tensor names in the order the graphs take them. */
export interface Graphs {
  encoded: string[]; // encoder outputs read by every step (N rows, axis 0)
  state: string[]; // the decoder state, passed in and out at every step
  state_axes: number[]; // the row axis of each state tensor
  attention: boolean; // the decoder's last output is attention weights (R, S)
}

type Tensors = ort.Tensor[];
type TypedArray = Float32Array | BigInt64Array | Uint8Array | Int32Array | Uint16Array;

function int64(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

/** Rows `rows` of tensor `t` along `axis`: numpy's t.take(rows, axis). */
export function take(t: ort.Tensor, rows: number[], axis: number): ort.Tensor {
  const dims = [...t.dims];
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const n = dims[axis];
  const data = t.data as TypedArray;
  const Kind = data.constructor as new (length: number) => TypedArray;
  const out = new Kind(outer * rows.length * inner);
  for (let o = 0; o < outer; o++) {
    rows.forEach((r, j) => {
      const from = (o * n + r) * inner;
      // set() of a subarray: one copy of `inner` numbers, whatever the typed array's kind
      const to = (o * rows.length + j) * inner;
      (out as Float32Array).set((data as Float32Array).subarray(from, from + inner), to);
    });
  }
  dims[axis] = rows.length;
  return new ort.Tensor(t.type as "float32", out as Float32Array, dims);
}

export class OnnxModel implements ArrayModel<Tensors, Tensors> {
  constructor(
    readonly encoder: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
    readonly graphs: Graphs,
  ) {
    const encoderOutputs = [...graphs.encoded, ...graphs.state];
    const decoderInputs = ["prev", ...graphs.state, ...graphs.encoded];
    const decoderOutputs = [
      "log_probs",
      ...graphs.state.map((name) => `next_${name}`),
      ...(graphs.attention ? ["attention"] : []),
    ];
    const same = (a: readonly string[], b: string[]) => a.join() === b.join();
    if (
      !same(encoder.inputNames, ["src", "src_lengths"]) ||
      !same(encoder.outputNames, encoderOutputs) ||
      !same(decoder.inputNames, decoderInputs) ||
      !same(decoder.outputNames, decoderOutputs)
    ) {
      throw new Error("a graph does not match model.json: export the model again");
    }
  }

  static async load(encoder: ArrayBuffer, decoder: ArrayBuffer, graphs: Graphs): Promise<OnnxModel> {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    };
    const timings = (globalThis as unknown as { nmtTimings?: Record<string, number> }).nmtTimings;
    const enc = await ort.InferenceSession.create(new Uint8Array(encoder), options);
    if (timings) timings.encoder = performance.now();
    const dec = await ort.InferenceSession.create(new Uint8Array(decoder), options);
    return new OnnxModel(enc, dec, graphs);
  }

  /** src (N, S), srcLengths (N,) -> the encoded tensors, the first decoder state. */
  async encode(src: number[][], srcLengths: number[]): Promise<{ enc: Tensors; state: Tensors }> {
    const out = await this.encoder.run({
      src: int64(src.flat(), [src.length, src[0].length]),
      src_lengths: int64(srcLengths, [srcLengths.length]),
    });
    return {
      enc: this.graphs.encoded.map((name) => out[name]),
      state: this.graphs.state.map((name) => out[name]),
    };
  }

  /** prev (R,) -> log-probabilities (R, V), the next state, attention (R, S) or null. */
  async decodeStep(
    state: Tensors,
    prev: number[],
    enc: Tensors,
  ): Promise<{ logProbs: Float32Array; state: Tensors; attention: Float32Array | null }> {
    const feed: Record<string, ort.Tensor> = { prev: int64(prev, [prev.length]) };
    this.graphs.state.forEach((name, i) => (feed[name] = state[i]));
    this.graphs.encoded.forEach((name, i) => (feed[name] = enc[i]));
    const out = await this.decoder.run(feed);
    return {
      logProbs: out.log_probs.data as Float32Array,
      state: this.graphs.state.map((name) => out[`next_${name}`]),
      attention: this.graphs.attention ? (out.attention.data as Float32Array) : null,
    };
  }

  selectState(state: Tensors, rows: number[]): Tensors {
    return state.map((t, i) => take(t, rows, this.graphs.state_axes[i]));
  }

  selectEncoded(enc: Tensors, sentences: number[]): Tensors {
    return enc.map((t) => take(t, sentences, 0));
  }
}
