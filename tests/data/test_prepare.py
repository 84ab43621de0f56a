"""nmt.data.prepare: a cache folder that cannot be one is one line, before any work."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from nmt import NmtError
from nmt.data.prepare import prepare_data


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("a-file", "data.cache_dir .*a-file is a file"),
        ("a-file/cache", "a-file is a file"),
        ("/proc/nmt-cache", "is in /proc, the kernel's"),
    ],
)
def test_a_cache_dir_that_cannot_be_a_folder_is_one_line(toy_dir, tmp_path, where, message):
    (tmp_path / "a-file").write_text("x")
    config = tiny_config(toy_dir, tmp_path / "run")
    config.data.cache_dir = where if where.startswith("/") else str(tmp_path / where)
    with pytest.raises(NmtError, match=message):
        prepare_data(config)
    assert not (tmp_path / "run").exists()  # refused before any work
    assert (tmp_path / "a-file").read_text() == "x"


def test_a_cache_that_cannot_be_made_is_one_line(toy_dir, tmp_path):
    from nmt.data.prepare import get_tokenizer, load_cache

    config = tiny_config(toy_dir, tmp_path / "run")
    tokenizer = get_tokenizer(config.data, tmp_path / "run", None)
    (tmp_path / "a-file").write_text("x")
    config.data.cache_dir = str(tmp_path / "a-file" / "cache")  # past the check: made later
    with pytest.raises(NmtError, match="cannot make its folder"):
        load_cache(config, tokenizer)
