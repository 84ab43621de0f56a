"""Tests for the in-memory Translator on the trained checkpoint."""

from __future__ import annotations

import pytest
import torch

from nmt import NmtError
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.search import SearchOptions, search_ids
from nmt.translation.translator import Translator


@pytest.fixture(scope="module")
def translator(trained) -> Translator:
    return Translator(trained)


@pytest.fixture(scope="module")
def sentences(toy_dir) -> list[str]:
    return (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()[:12]


def _summary(results) -> list[list[tuple[str, float, float]]]:
    return [[(h.text, h.log_prob, h.score) for h in t.hypotheses] for t in results]


@pytest.mark.parametrize("beam_size", [1, 4])
def test_batch_equals_one_at_a_time(translator, sentences, beam_size) -> None:
    batch = translator.translate(
        sentences, SearchOptions(beam_size=beam_size, nbest=min(beam_size, 2))
    )
    alone = [
        translator.translate([s], SearchOptions(beam_size=beam_size, nbest=min(beam_size, 2)))[0]
        for s in sentences
    ]
    assert [t.source for t in batch] == sentences
    summary, expected = _summary(batch), _summary(alone)
    for got, want in zip(summary, expected):
        assert [h[0] for h in got] == [h[0] for h in want]
        assert [h[1] for h in got] == pytest.approx([h[1] for h in want], abs=1e-5)
        assert [h[2] for h in got] == pytest.approx([h[2] for h in want], abs=1e-5)
    assert all(t.text for t in batch)


def test_empty_strings_give_empty_outputs(translator, sentences) -> None:
    mixed = ["", sentences[0], "", "   ", sentences[1], ""]
    results = translator.translate(mixed, SearchOptions(beam_size=3))
    assert len(results) == len(mixed)
    for source, t in zip(mixed, results):
        assert t.source == source
        if source.strip():
            assert t.text and t.hypotheses
        else:
            assert t.text == "" and t.hypotheses == [] and t.src_tokens == []
    alone = translator.translate(sentences[:2], SearchOptions(beam_size=3))
    assert [results[1].text, results[4].text] == [t.text for t in alone]
    assert translator.translate([], SearchOptions(beam_size=3)) == []
    assert [t.text for t in translator.translate(["", ""])] == ["", ""]


def test_outputs_carry_tokens_and_attention(translator, sentences) -> None:
    (t,) = translator.translate(sentences[:1], SearchOptions(beam_size=3, return_attention=True))
    h = t.hypotheses[0]
    assert t.src_tokens[-1] == "</s>" and h.tokens[-1] == "</s>"
    assert len(h.attention) == len(h.tokens)
    assert all(len(row) == len(t.src_tokens) for row in h.attention)
    assert all(abs(sum(row) - 1) < 1e-4 for row in h.attention)


def test_checkpoint_round_trip_gives_identical_outputs(
    trained, translator, sentences, tmp_path
) -> None:
    ckpt = load_checkpoint(trained)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, model=ckpt.model, config=ckpt.config, tokenizer=ckpt.tokenizer)
    reloaded = load_checkpoint(copy)
    assert reloaded.config == ckpt.config
    original, again = ckpt.model.state_dict(), reloaded.model.state_dict()
    assert original.keys() == again.keys()
    assert all((original[k] == again[k]).all() for k in original)
    before = translator.translate(sentences, SearchOptions(beam_size=3, nbest=2))
    after = Translator(copy).translate(sentences, SearchOptions(beam_size=3, nbest=2))
    assert _summary(before) == _summary(after)


def test_int8_quantization_keeps_the_translations(trained, translator, sentences) -> None:
    quantized = Translator(trained, quantize="int8")
    a = [t.text for t in translator.translate(sentences, SearchOptions(beam_size=4))]
    b = [t.text for t in quantized.translate(sentences, SearchOptions(beam_size=4))]
    assert len(a) == len(b)
    same = sum(x == y for x, y in zip(a, b)) / len(a)
    assert same >= 0.8, f"only {same:.0%} of int8 outputs match float32"


@pytest.mark.parametrize("beam_size", [1, 4])
def test_worker_processes_give_the_same_translations(
    trained, translator, sentences, beam_size
) -> None:
    # small batches so that both workers get several; input order must survive the pool
    options = SearchOptions(beam_size=beam_size, nbest=min(beam_size, 2), return_attention=True)
    mixed = ["", *sentences, ""]
    alone = translator.translate(mixed, options, batch_tokens=60)
    parallel = Translator(trained, workers=2)
    try:
        together = parallel.translate(mixed, options, batch_tokens=60)
    finally:
        parallel.close()
    assert [t.source for t in together] == mixed
    for got, want in zip(_summary(together), _summary(alone)):
        assert [h[0] for h in got] == [h[0] for h in want]
        assert [h[2] for h in got] == pytest.approx([h[2] for h in want], abs=1e-5)
    for got, want in zip(together[1:-1], alone[1:-1]):
        a, b = got.hypotheses[0].attention, want.hypotheses[0].attention
        assert len(a) == len(b)
        assert sum(a, []) == pytest.approx(sum(b, []), abs=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be a whole number >= 1, got 0"),
        ({"device": "cuda", "workers": 2}, "workers above 1 run on the CPU only"),
        ({"threads": -1}, "threads must be a whole number >= 0, got -1"),
        ({"quantize": "int4"}, "quantize must be one of none, int8, got 'int4'"),
        ({"device": "cuda", "quantize": "int8"}, "quantize int8 runs on the CPU only"),
    ],
)
def test_translator_options_are_checked(trained, options, message) -> None:
    with pytest.raises(NmtError, match=message):
        Translator(trained, **options)


def test_search_options_are_checked_for_library_callers(translator, sentences) -> None:
    default = translator.translate(sentences[:3])
    assert _summary(default) == _summary(translator.translate(sentences[:3], SearchOptions()))
    # a library caller gets the checks the command line gets
    with pytest.raises(NmtError, match=r"nbest must be between 1 and the beam size \(2\)"):
        translator.translate(sentences, SearchOptions(beam_size=2, nbest=3))
    with pytest.raises(NmtError, match="max_len_ratio must be a finite number"):
        translator.translate(sentences, SearchOptions(max_len_ratio=float("nan")))
    with pytest.raises(NmtError, match="batch_tokens must be a whole number >= 1"):
        translator.translate(sentences, batch_tokens=0)


def test_translator_leaves_the_thread_count_as_it_found_it(trained, sentences, monkeypatch) -> None:
    import nmt.translation.translator

    before = torch.get_num_threads()
    seen = []
    search_id_batches = nmt.translation.translator.search_id_batches

    def spy(*args, **kwargs):
        for batch in search_id_batches(*args, **kwargs):
            seen.append(torch.get_num_threads())
            yield batch

    monkeypatch.setattr(nmt.translation.translator, "search_id_batches", spy)
    translator = Translator(trained, threads=before + 1)
    assert torch.get_num_threads() == before
    translator.translate(sentences[:2], SearchOptions(beam_size=2))
    assert seen == [before + 1]  # its threads while it translates
    assert torch.get_num_threads() == before


# -- which attention a Transformer shows ---------------------------------------------------
def test_attention_layer_and_head_choose_the_transformer_attention(
    trained_transformer, sentences
) -> None:
    default = Translator(trained_transformer)
    chosen = Translator(trained_transformer, attention_layer=0, attention_head=1)
    assert (chosen.model.attention_layer, chosen.model.attention_head) == (0, 1)
    a = default.translate(sentences[:3], SearchOptions(beam_size=3, return_attention=True))
    b = chosen.translate(sentences[:3], SearchOptions(beam_size=3, return_attention=True))
    assert [t.text for t in a] == [t.text for t in b]  # what is shown changes, not the output
    model = load_checkpoint(trained_transformer).model
    model.choose_attention(0, 1)
    src_ids = chosen.tokenizer.encode_src(sentences[:1])
    hyp = search_ids(chosen.model, src_ids, SearchOptions(beam_size=3, return_attention=True))[0][0]
    with torch.inference_mode():
        src = torch.tensor([src_ids[0] + [3]])
        tgt_in = torch.tensor([[2] + hyp.tokens])  # BOS
        _, att = model(src, torch.tensor([src.size(1)]), tgt_in, return_attention=True)
    shown = sum(b[0].hypotheses[0].attention, [])
    assert shown == pytest.approx(att[0].flatten().tolist(), abs=1e-5)
    assert sum(a[0].hypotheses[0].attention, []) != pytest.approx(shown, abs=1e-3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attention_layer": 2}, "attention_layer must be between -2 and 1 .* got 2"),
        ({"attention_head": 4}, "attention_head must be between 0 and 3 .* got 4"),
        ({"attention_head": "1"}, "attention_head must be a head number or None"),
    ],
)
def test_attention_layer_and_head_are_checked(trained_transformer, options, message) -> None:
    with pytest.raises(NmtError, match=message):
        Translator(trained_transformer, **options)


def test_attention_layer_and_head_are_refused_for_an_rnn(trained) -> None:
    with pytest.raises(NmtError, match=f"{trained} is an RNN, which has one"):
        Translator(trained, attention_head=0)
    Translator(trained, attention_layer=-1, attention_head=None)  # the defaults are fine


def test_auto_workers_and_device(trained, sentences) -> None:
    import multiprocessing

    plain = Translator(trained).translate(sentences * 40, SearchOptions(beam_size=2))
    auto = Translator(trained, device="auto", workers="auto")
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        auto.translate(sentences[:2], SearchOptions(beam_size=2))
        assert auto._pool is None  # a small call: no processes started for it
        found = auto.translate(sentences * 40, SearchOptions(beam_size=2))
        if auto.workers > 1:
            assert auto._pool is not None and multiprocessing.active_children()
    finally:
        auto.close()
    assert [t.text for t in found] == [t.text for t in plain]


def test_the_python_api_picks_the_device_as_the_cli_does() -> None:
    import inspect

    from nmt.cli.translate import translate

    cli_default = inspect.signature(translate).parameters["device"].default
    assert inspect.signature(Translator).parameters["device"].default == cli_default == "auto"


@pytest.fixture(scope="module")
def ends_at_once(trained, tmp_path_factory):
    """The trained model with its end token scoring best at every step, as an undertrained
    model's may at the first."""
    from nmt.checkpoint import read_state
    from nmt.tokenizer import EOS

    state = read_state(trained)
    state["model"]["output_bias"][EOS] = 50.0
    path = tmp_path_factory.mktemp("eos") / "eos.pt"
    torch.save(state, path)
    return Translator(path)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_a_non_empty_sentence_never_gets_an_empty_translation(
    ends_at_once, sentences, beam_size
) -> None:
    options = SearchOptions(beam_size=beam_size, nbest=beam_size)
    batch = ends_at_once.translate(["", *sentences[:3], "   "], options)
    assert [t.text for t in (batch[0], batch[-1])] == ["", ""]  # empty in, empty out
    for t in batch[1:-1]:  # a piece at least before the end token, and some text
        assert all(len(h.tokens) >= 2 and h.tokens[-1] == "</s>" for h in t.hypotheses), t
        assert t.text.strip(), t
    # still each sentence's own result, whatever it is batched with
    alone = [ends_at_once.translate([s], options)[0] for s in sentences[:3]]
    assert [t.hypotheses[0].tokens for t in alone] == [t.hypotheses[0].tokens for t in batch[1:-1]]
    # what the search alone does with the same model: the textbook search may end at once
    found = search_ids(ends_at_once.model, [[5, 6]], SearchOptions(beam_size=beam_size))
    assert found[0][0].tokens == []
