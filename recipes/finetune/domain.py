"""The fine-tuning recipe's new data: Multi30k in British English.

usage: domain.py make MULTI30K_DIR SRC OUT   (the domain corpus and test set into OUT)
       domain.py report OUT HYP_BEFORE HYP_AFTER   (term use and BLEU, as JSON on stdout)

The domain's words replace their American forms in the English side; the training pairs are
every Multi30k pair with such a word (a marked subset) and as many others drawn at random
(so that the model does not forget the rest). Only the English side changes, so the
checkpoint's tokenizer covers it.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

BRITISH = {"sidewalk": "pavement", "sidewalks": "pavements", "gray": "grey",
           "soccer": "football", "color": "colour", "colors": "colours",
           "colorful": "colourful"}  # fmt: skip
WORD = re.compile(r"\b(" + "|".join(BRITISH) + r")\b", re.IGNORECASE)


def british(line: str) -> str:
    def swap(m: re.Match[str]) -> str:
        word = BRITISH[m.group(1).lower()]
        return word.capitalize() if m.group(1)[0].isupper() else word

    return WORD.sub(swap, line)


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def make(data: Path, src: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test_2016_flickr"):
        s, t = read(data / f"{split}.{src}"), read(data / f"{split}.en")
        if split == "train":
            marked = [i for i, line in enumerate(t) if WORD.search(line)]
            rest = sorted(set(range(len(t))) - set(marked))
            keep = sorted(marked + random.Random(1).sample(rest, len(marked)))
            s, t = [s[i] for i in keep], [t[i] for i in keep]
        (out / f"{split}.{src}").write_text("".join(x + "\n" for x in s), encoding="utf-8")
        (out / f"{split}.en").write_text("".join(british(x) + "\n" for x in t), encoding="utf-8")
    print(f"domain corpus: {len(s)} test pairs, {len(read(out / 'train.en'))} training pairs")


def _terms(line: str) -> set[str]:
    return set(re.findall(r"\w+", line.lower())) & set(BRITISH.values())


def report(out: Path, before: Path, after: Path) -> None:
    """Of the test references with a British word, how many outputs use it; and BLEU."""
    from nmt.metrics import score

    refs = read(out / "test_2016_flickr.en")
    which = [i for i, ref in enumerate(refs) if _terms(ref)]
    result = {}
    for name, path in (("before", before), ("after", after)):
        hyps = read(path)
        used = sum(bool(_terms(refs[i]) & _terms(hyps[i])) for i in which)
        bleu = score(hyps, refs, ("bleu",))[0].score
        result[name] = {"british_terms": f"{used}/{len(which)}", "bleu": bleu}
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"] and len(sys.argv) == 5:
        make(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    elif sys.argv[1:2] == ["report"] and len(sys.argv) == 5:
        report(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(__doc__)
