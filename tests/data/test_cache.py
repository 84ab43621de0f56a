"""The tokenized training cache: the same batches as in memory, rebuilt when stale or damaged,
each rank reading its own batches, filters that count what they drop."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
from conftest import tiny_config

import nmt.data.prepare
from nmt.data.cache import open_cache
from nmt.data.corpus import iter_parallel, read_chunks, read_lines
from nmt.data.prepare import TrainData, load_cache, prepare_data
from nmt.data.token_ids import encode_chunks
from nmt.tokenizer import train_tokenizer
from nmt.train import Trainer


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _config(data_dir, run_dir, **data):
    cfg = tiny_config(data_dir, run_dir)
    cfg.train.batch_tokens = 600
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def _batches(trainer, epoch):
    trainer.state.epoch, trainer.state.batch_in_epoch = epoch, 0
    return list(trainer.epoch_batches())


def _same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x.src, y.src)
        and torch.equal(x.tgt_in, y.tgt_in)
        and torch.equal(x.tgt_out, y.tgt_out)
        for x, y in zip(a, b)
    )


def _corpus(tmp_path, src, tgt):
    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    for name, lines in (
        ("train.en", src),
        ("train.pt", tgt),
        ("valid.en", src[:5]),
        ("valid.pt", tgt[:5]),
    ):
        (d / name).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return d


def test_the_cache_gives_the_batches_of_the_in_memory_path(toy_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(nmt.data.prepare, "CHUNK_LINES", 256)  # written in a dozen chunks
    cfg = _config(toy_dir, tmp_path / "run")
    cached, tokenizer = prepare_data(cfg)
    assert cached.train_ids is not None and not cached.train_src  # no text held in memory
    text = TrainData(
        *(_lines(toy_dir / n) for n in ("train.en", "train.pt", "valid.en", "valid.pt"))
    )
    in_memory = Trainer(cfg, text, tokenizer, device=torch.device("cpu"))
    from_disk = Trainer(cfg, cached, tokenizer, device=torch.device("cpu"))
    for epoch in (0, 1):
        a, b = _batches(in_memory, epoch), _batches(from_disk, epoch)
        assert len(a) > 10 and _same(a, b)
    # a resumed epoch starts at the same batch
    from_disk.state.epoch, from_disk.state.batch_in_epoch = 1, 4
    assert _same(list(from_disk.epoch_batches()), _batches(in_memory, 1)[4:])


def test_a_later_run_reuses_the_cache(toy_dir, tmp_path, monkeypatch):
    cfg = _config(toy_dir, tmp_path / "run")
    first, _ = prepare_data(cfg)

    def no_build(*args, **kwargs):
        raise AssertionError("the cache was built again")

    monkeypatch.setattr(nmt.data.prepare, "build_cache", no_build)
    again, _ = prepare_data(cfg)
    assert again.train_ids.path == first.train_ids.path


def test_a_changed_corpus_or_tokenizer_makes_a_new_cache(tmp_path):
    src = [f"sentence number {i}" for i in range(60)]
    tgt = [f"frase numero {i}" for i in range(60)]
    data = _corpus(tmp_path, src, tgt)
    cfg = _config(data, tmp_path / "run", vocab_size=60)
    old, tokenizer = prepare_data(cfg)
    old_path, old_ids = old.train_ids.path, old.train_ids.pairs([0])
    # the same size and modification time, another line: the content hash tells them apart
    path = data / "train.en"
    stat = path.stat()
    path.write_text(path.read_text().replace("sentence number 0\n", "sentence numbex 0\n"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    new, _ = prepare_data(cfg)
    assert new.train_ids.path != old_path
    assert new.train_ids.pairs([0])[0] == [tokenizer.encode_src(["sentence numbex 0"])[0]]
    assert new.train_ids.pairs([0])[0] != old_ids[0]
    # another tokenizer, same corpus
    other = train_tokenizer(src, tgt, vocab_size=30)
    assert other.src_proto != tokenizer.src_proto
    other.save(tmp_path / "other-tok")
    cfg.data.tokenizer = str(tmp_path / "other-tok")
    third, tok = prepare_data(cfg)
    assert third.train_ids.path not in (old_path, new.train_ids.path)
    assert third.train_ids.pairs([1])[0] == [other.encode_src([src[1]])[0]]
    # a cache only opens for the key it was built for
    assert open_cache(old_path, third.train_ids.meta["key"]) is None


def test_a_killed_build_and_a_damaged_array_are_rebuilt(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path / "run")
    data, tokenizer = prepare_data(cfg)
    cache = data.train_ids
    path, key, want = cache.path, cache.meta["key"], cache.pairs(range(len(cache)))
    del data, cache
    # a build killed part-way leaves its temporary folder (its process is gone)
    leftover = path.parent / f".{path.name}.{socket.gethostname()}.999999999.tmp"
    leftover.mkdir()
    (leftover / "src.ids").write_bytes(b"\0" * 10)
    # and an array cut short
    ids = path / "tgt.ids"
    ids.write_bytes(ids.read_bytes()[:-7])
    assert open_cache(path, key) is None
    rebuilt = load_cache(cfg, tokenizer)
    assert rebuilt.pairs(range(len(rebuilt))) == want
    assert not leftover.exists()
    # other bytes of the same size (a disk or copy error): ids past the vocabulary would
    # reach the embedding
    ids = path / "src.ids"
    ids.write_bytes(bytes(255 - b for b in ids.read_bytes()))
    assert open_cache(path, key) is None
    assert load_cache(cfg, tokenizer).pairs(range(len(rebuilt))) == want
    # a folder under the cache's name without its meta data (never complete) is not read
    (path / "meta.json").unlink()
    assert load_cache(cfg, tokenizer).pairs(range(len(rebuilt))) == want


def test_a_failed_first_build_leaves_no_folder(tmp_path):
    src = ["a b", "c d"]
    data = _corpus(tmp_path, src, ["", " "])
    (data / "valid.pt").write_text("a b\nc d\n")  # validation is fine: training is not
    cfg = _config(data, tmp_path / "run", tokenizer=str(tmp_path / "tok"))
    train_tokenizer(src, src, vocab_size=20).save(tmp_path / "tok")
    from nmt import NmtError

    with pytest.raises(NmtError, match="training set is empty"):
        prepare_data(cfg)
    assert not (tmp_path / "run").exists()


def test_two_ranks_read_disjoint_batches_that_cover_the_epoch(toy_dir, tmp_path, monkeypatch):
    cfg = _config(toy_dir, tmp_path / "run")
    data, tokenizer = prepare_data(cfg)
    cache = data.train_ids
    trainer = Trainer(cfg, data, tokenizer, device=torch.device("cpu"))
    plan, _ = trainer.epochs.plan(0, 0)  # one process: the whole plan, which every rank builds
    read: list[list[int]] = []
    real = type(cache).pairs

    def spy(self, idxs):
        read.append(list(idxs))
        return real(self, idxs)

    monkeypatch.setattr(type(cache), "pairs", spy)
    seen = {}
    for rank in (0, 1):
        read.clear()
        trainer.epochs.rank, trainer.epochs.world = rank, 2
        assert len(_batches(trainer, epoch=0)) == len(read) == len(plan) // 2
        seen[rank] = [i for batch in read for i in batch]  # it read its own batches only
    assert not set(seen[0]) & set(seen[1])
    # together, every batch of the epoch; an odd last one is left out, so that both ranks
    # make as many updates
    shared = range(len(plan) // 2 * 2)
    assert sorted(seen[0] + seen[1]) == sorted(i for k in shared for i in plan.batch(k))
    assert len(seen[0] + seen[1]) >= len(cache) - max(len(plan.batch(k)) for k in range(len(plan)))


def test_the_filters_count_what_they_drop(tmp_path, monkeypatch):
    monkeypatch.setattr(nmt.data.prepare, "CHUNK_LINES", 7)  # repeats in other chunks too
    src = ["the cat sat", "the cat sat", "same words", "a b c d e f g h i j k l", "one", "dog"]
    tgt = ["o gato", "o gato", "same words", "x", "", "cao"]
    data = _corpus(tmp_path, src * 10, tgt * 10)
    filters = {"max_len_ratio": 3.0, "drop_identical": True, "drop_duplicates": True}
    cfg = _config(data, tmp_path / "run", vocab_size=40, **filters)
    prepared, tokenizer = prepare_data(cfg)
    stats = prepared.train_ids.stats
    assert (stats.read, stats.empty, stats.ratio, stats.identical) == (60, 10, 10, 10)
    # repeats of "the cat sat" (19) and of "dog" (9); each is kept once
    assert (stats.duplicate, stats.kept) == (28, 2)
    kept = prepared.train_ids.pairs(range(stats.kept))
    assert kept[0] == tokenizer.encode_src(["the cat sat", "dog"])
    # the in-memory path drops the same pairs, and the log counts them
    text = TrainData(src * 10, tgt * 10, src[:5], tgt[:5])
    cfg.train.max_steps = 1
    trainer = Trainer(cfg, text, tokenizer, device=torch.device("cpu"))
    assert trainer.epochs.filter_stats == stats
    trainer.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    data_record = next(r for r in records if r["kind"] == "data")
    counts = ("dropped_duplicate", "dropped_identical", "dropped_ratio", "pairs", "read")
    assert tuple(data_record[k] for k in counts) == (28, 10, 10, 2, 60)


def test_lengths_and_ids_are_stored_compactly(toy_dir, tmp_path):
    cache = prepare_data(_config(toy_dir, tmp_path / "run"))[0].train_ids
    # lengths in a byte each while data.max_len is under 256
    assert cache.src_lens.dtype == np.uint8 and cache.meta["ids_dtype"] == "uint16"
    assert isinstance(cache.src_lens, np.ndarray) and not cache.src_lens.flags.writeable
    longer = prepare_data(_config(toy_dir, tmp_path / "run2", max_len=300))[0].train_ids
    assert longer.src_lens.dtype == np.uint16
    assert longer.pairs(range(5)) == cache.pairs(range(5))


def test_reading_in_chunks_gives_the_lines_of_read_lines(tmp_path):
    text = b"one\r\ntwo\n\nthree\r\r\n \n\xc3\xa9t\xc3\xa9\nlast\r"
    path = tmp_path / "a.txt"
    path.write_bytes(text)
    for chunk_lines in (1, 2, 3, 100):
        chunks = [lines for lines, _ in read_chunks(path, chunk_lines)]
        assert [x for c in chunks for x in c] == read_lines(path)
    (tmp_path / "b.txt").write_bytes(text.replace(b"last", b"l\xc3(st"))
    from nmt import NmtError

    with pytest.raises(NmtError, match="b.txt:7: not valid UTF-8"):
        list(read_chunks(tmp_path / "b.txt", 2))
    (tmp_path / "c.txt").write_bytes(b"1\n2\n3\n4\n5\n6\n7\n")
    pairs = [p for src, tgt, _ in iter_parallel(path, tmp_path / "c.txt", 3) for p in zip(src, tgt)]
    assert pairs == list(zip(read_lines(path), read_lines(tmp_path / "c.txt")))
    (tmp_path / "d.txt").write_bytes(b"1\n2\n3\n4\n5\n6\n7\n8\n")
    with pytest.raises(NmtError, match="a.txt has 7 lines but .*d.txt has 8"):
        list(iter_parallel(path, tmp_path / "d.txt", 7))


def test_repeated_pairs_are_found_across_many_chunks():
    from nmt.data.corpus import SeenPairs

    seen = SeenPairs()
    firsts = []
    for chunk in range(40):
        src = [f"s{i % 150}" for i in range(chunk * 10, chunk * 10 + 10)]
        firsts += seen.first_seen(src, ["t"] * len(src)).tolist()
    assert sum(firsts) == 150  # 400 pairs, 150 of them different
    assert firsts[:150] == [True] * 150 and not any(firsts[150:])
    both = seen.first_seen(["s0", "new", "new"], ["t", "t", "t"]).tolist()
    assert both == [False, True, False]


def test_a_run_dir_tokenizer_learns_from_a_bounded_sample_read_as_a_stream(
    toy_dir, tmp_path, monkeypatch
):
    import sentencepiece as spm

    real_spm, real_train = spm.SentencePieceTrainer.train, nmt.data.prepare.train_tokenizer
    given, streamed = [], []

    def spy_spm(**kwargs):
        given.append(list(kwargs.pop("sentence_iterator")))
        return real_spm(sentence_iterator=iter(given[-1]), **kwargs)

    def spy_train(src, tgt, **kwargs):
        streamed.append(not isinstance(src, list) and not isinstance(tgt, list))
        return real_train(src, tgt, **kwargs)

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", spy_spm)
    monkeypatch.setattr(nmt.data.prepare, "train_tokenizer", spy_train)
    cfg = _config(toy_dir, tmp_path / "run", tokenizer_sample=500)
    prepare_data(cfg)
    assert streamed == [True]  # the lines stream from the files
    (lines,) = given  # joint: one model, 500 lines drawn from both sides' 6000
    corpus = _lines(toy_dir / "train.en") + _lines(toy_dir / "train.pt")
    assert len(lines) == 500 and set(lines) <= set(corpus)
    assert lines != corpus[:500]


def test_nmt_prepare_builds_the_cache_that_train_then_reads(toy_dir, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from nmt.cli.main import app

    cfg = _config(toy_dir, tmp_path / "run", cache_dir=str(tmp_path / "shared-cache"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    runner = CliRunner()
    first = runner.invoke(app, ["prepare", "-q", "-c", str(path)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["pairs"] == summary["filter"]["kept"] == 3000
    assert summary["cache"].startswith(str(tmp_path / "shared-cache"))
    # another run dir, the same data and tokenizer: the same cache
    second = runner.invoke(
        app,
        ["prepare", "-q", "-c", str(path), "--set", f"train.run_dir={tmp_path}/run2"]
        + ["--set", f"data.tokenizer={tmp_path}/run/tokenizer"],
    )
    assert json.loads(second.stdout)["cache"] == summary["cache"]
    bad = runner.invoke(app, ["prepare", "-c", str(path), "--set", "data.max_len_ratio=0.5"])
    assert bad.exit_code == 2 and "data.max_len_ratio" in bad.stderr


def test_subword_sampling_encodes_the_text_in_memory_every_epoch(toy_dir, tmp_path):
    cfg = _config(toy_dir, tmp_path / "run", sampling_alpha=0.5)
    data, tokenizer = prepare_data(cfg)
    assert data.train_ids is None and len(data.train_src) == 3000
    assert not (tmp_path / "run" / "cache").exists()
    trainer = Trainer(cfg, data, tokenizer, device=torch.device("cpu"))
    first = trainer.epochs.pairs.pairs(range(20))
    _batches(trainer, epoch=1)
    assert trainer.epochs.pairs.pairs(range(20)) != first  # drawn anew for the new epoch


def test_worker_processes_encode_the_chunks_as_one_process_does(toy_dir):
    src, tgt = _lines(toy_dir / "train.en"), _lines(toy_dir / "train.pt")
    tokenizer = train_tokenizer(src, tgt, vocab_size=200)
    chunks = [(src[i : i + 100], tgt[i : i + 100], (i + 100) / 1000) for i in range(0, 1000, 100)]
    dtype = np.dtype(np.uint16)
    one, two = (list(encode_chunks(chunks, tokenizer, dtype, workers=w)) for w in (1, 2))
    assert [c for c, _ in two] == chunks  # in order, none lost
    for (chunk, a), (_, b) in zip(one, two):
        for side, encode in (("src", tokenizer.encode_src), ("tgt", tokenizer.encode_tgt)):
            ids, lens = getattr(b, f"{side}_ids"), getattr(b, f"{side}_lens")
            assert np.array_equal(ids, getattr(a, f"{side}_ids"))
            assert np.array_equal(lens, getattr(a, f"{side}_lens"))
            lines = chunk[0] if side == "src" else chunk[1]
            assert [x.tolist() for x in np.split(ids, np.cumsum(lens)[:-1])] == encode(lines)
