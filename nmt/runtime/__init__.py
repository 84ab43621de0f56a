"""A trained model outside torch: the folder `nmt export --format onnx` writes, run with
numpy, onnxruntime and sentencepiece only.

`folder` reads and checks an exported folder (what the export writes and the runtime expects
is defined there, once); `model` runs its encoder and decoder-step graphs (one model or an
ensemble); `search` is the greedy and beam search of nmt/search.py over numpy arrays;
`base` is the text side every translator shares (sentences to ids, batches, outputs), which
the torch `Translator` builds on too; `translator` is the runtime's `Translator`.

Imports no torch, ever (a test imports it with torch hidden): may import the package root's
torch-free modules (`nmt`, `tokenizer`, `search_options`, `files`, `procs`) and the `data` wing.
"""
