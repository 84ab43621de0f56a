"""Translation with a trained model: the in-memory `Translator` and what serves it.

`translator` holds the Translator (checkpoint in, translations out); `streaming` translates
files of any size line by line, resumably, through the `.partial` file of `partial`;
`workers` searches batches in worker processes side by side; `ensemble` searches several
models as one; `quantize` makes int8 models for the CPU.

May import the package root and the `data` and `runs` wings.
"""
