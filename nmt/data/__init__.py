"""Corpora in, token ids out: what training reads.

`corpus` reads line-aligned files and Hugging Face datasets strictly and filters them; `toy`
generates the built-in corpus; `token_ids` tokenizes a corpus on every core; `cache` keeps the
token ids on disk, memory-mapped; `prepare` makes the tokenizer and the cache a run needs;
`epochs` plans each epoch's batches for one rank.

May import the package root's textbook modules (config, tokenizer, batching, distributed,
files, procs); imports no other wing. The training loop (nmt/train.py) imports it.
"""
