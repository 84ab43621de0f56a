"""An exported model's graphs run by onnxruntime, with the decoding interface the runtime's
search reads (nmt/runtime/search.py); several of them as an ensemble.

The encoded tensors and the decoder state travel as lists of numpy arrays in the manifest's
order (nmt/runtime/folder.py); picking rows of them is all beam search does to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nmt import NmtError
from nmt.runtime import folder
from nmt.runtime.folder import Manifest


def ensemble_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """`count` weights summing to 1: equal ones by default, else `weights` normalized; each
    must be a finite number > 0."""
    if weights is None:
        return [1.0 / count] * count
    values = list(weights)
    if len(values) != count:
        raise NmtError(
            f"must be one a model: {len(values)} given for {count} models", option="weights"
        )
    for w in values:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise NmtError(f"must be finite numbers > 0, got {w!r}", option="weights")
    total = sum(values)
    return [w / total for w in values]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # one operator at a time, each on `threads` threads (0: onnxruntime's choice, the cores)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are about graph fusions
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types, one per failure
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NmtError(f"{path}: onnxruntime cannot load this graph ({first})") from None


class OnnxModel:
    """One exported folder: its encoder and decoder-step graphs in onnxruntime sessions."""

    def __init__(self, directory: str | Path, manifest: Manifest, threads: int = 0) -> None:
        d = Path(directory)
        self.manifest, self.graphs = manifest, manifest.graphs
        self.encoder = _session(d / folder.ENCODER, threads)
        self.decoder = _session(d / folder.DECODER, threads)
        self._check(self.encoder, ["src", "src_lengths"], self.graphs.encoder_outputs, d)
        self._check(self.decoder, self.graphs.decoder_inputs, self.graphs.decoder_outputs, d)
        self.n_encoded = len(self.graphs.encoded)

    @staticmethod
    def _check(session, inputs: list[str], outputs: list[str], d: Path) -> None:
        have_in = [i.name for i in session.get_inputs()]
        have_out = [o.name for o in session.get_outputs()]
        if have_in != inputs or have_out != outputs:
            raise NmtError(
                f"{d}: a graph does not match the manifest (inputs {have_in}, outputs "
                f"{have_out}): export the model again"
            )

    def encode(
        self, src: np.ndarray, src_lengths: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """src (N, S), src_lengths (N,) -> the encoded tensors, the first decoder state."""
        out = self.encoder.run(None, {"src": src, "src_lengths": src_lengths})
        return out[: self.n_encoded], out[self.n_encoded :]

    def decode_step(
        self, state: list[np.ndarray], prev: np.ndarray, enc: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        """prev (R,) -> log-probabilities (R, V), the next state, attention (R, S) or None."""
        feed = dict(zip(self.graphs.decoder_inputs, [prev, *state, *enc]))
        out = self.decoder.run(None, feed)
        n = len(state)
        weights = out[1 + n] if self.graphs.attention else None
        return out[0], out[1 : 1 + n], weights

    def select_state(self, state: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
        return [t.take(rows, axis) for t, axis in zip(state, self.graphs.state_axes)]

    def select_encoded(self, enc: list[np.ndarray], sentences: np.ndarray) -> list[np.ndarray]:
        return [t[sentences] for t in enc]


class Ensemble:
    """Models averaged at every step, as nmt/translation/ensemble.py: the weighted mean of
    the members' log-probabilities, renormalized; the first member's attention."""

    def __init__(self, members: Sequence[OnnxModel], weights: Sequence[float]) -> None:
        self.members, self.weights = list(members), list(weights)

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[list, list]:
        encoded = [m.encode(src, src_lengths) for m in self.members]
        return [e for e, _ in encoded], [s for _, s in encoded]

    def decode_step(
        self, state: list, prev: np.ndarray, enc: list
    ) -> tuple[np.ndarray, list, np.ndarray | None]:
        mixed, states, first = None, [], None
        for i, (m, s, e) in enumerate(zip(self.members, state, enc)):
            lp, s, weights = m.decode_step(s, prev, e)
            mixed = (
                lp * np.float32(self.weights[i])
                if mixed is None
                else mixed + lp * np.float32(self.weights[i])
            )
            states.append(s)
            if i == 0:
                first = weights
        assert mixed is not None  # at least one member
        # log_softmax, stable: x - max - log(sum(exp(x - max)))
        top = mixed.max(-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)
        shifted = mixed - top
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True)), states, first

    def select_state(self, state: list, rows: np.ndarray) -> list:
        return [m.select_state(s, rows) for m, s in zip(self.members, state)]

    def select_encoded(self, enc: list, sentences: np.ndarray) -> list:
        return [m.select_encoded(e, sentences) for m, e in zip(self.members, enc)]
