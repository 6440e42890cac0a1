"""Build the SciFact demo subset that ships inside the package (src/vectune/data/scifact_demo/).

Keeps every abstract that a train or test claim points at, fills up to ``--size``
abstracts with a seeded sample of the others (distractors), and writes:

* ``corpus.jsonl.gz`` — ``{"_id", "title", "text"}`` per abstract, sorted by id;
* ``train.jsonl.gz`` / ``test.jsonl.gz`` — ``{"_id", "query", "relevant": [abstract ids]}`` per claim
  (the format of ``--train-set`` / ``--eval-set`` and of ``vectune feedback import``);
* ``README.md`` — license, attribution, counts and checksums.

The gzip files carry no timestamp or name, so the same input gives byte-identical output.

Usage::

    python bench/make_scifact_demo.py [--src /work/shared/data/scifact] [--size 2000] [--seed 13]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "vectune" / "data" / "scifact_demo"


def read_qrels(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)  # header
        for qid, did, score in rows:
            if int(score) > 0 and did not in out[qid]:
                out[qid].append(did)
    return dict(out)


def write_gz_jsonl(path: Path, rows: list[dict]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data/scifact"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--size", type=int, default=2000, help="abstracts in the subset (at least the judged ones)")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    corpus: dict[str, dict] = {}
    with gzip.open(args.src / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                corpus[str(d["_id"])] = {"_id": str(d["_id"]), "title": d.get("title", ""), "text": d["text"]}
    queries = {}
    with open(args.src / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                q = json.loads(line)
                queries[str(q["_id"])] = q["text"]
    splits = {name: read_qrels(args.src / "qrels" / f"{name}.tsv") for name in ("train", "test")}

    judged = {d for qrels in splits.values() for ds in qrels.values() for d in ds}
    missing = judged - set(corpus)
    if missing:
        raise SystemExit(f"{len(missing)} judged abstracts are not in the corpus: {sorted(missing)[:5]}")
    others = sorted(set(corpus) - judged, key=lambda x: (len(x), x))
    n_fill = max(0, args.size - len(judged))
    fill = random.Random(args.seed).sample(others, min(n_fill, len(others)))
    keep = sorted(judged | set(fill), key=lambda x: (len(x), x))

    args.out.mkdir(parents=True, exist_ok=True)
    write_gz_jsonl(args.out / "corpus.jsonl.gz", [corpus[d] for d in keep])
    counts = {}
    for name, qrels in splits.items():
        rows = [{"_id": qid, "query": queries[qid], "relevant": qrels[qid]}
                for qid in sorted(qrels, key=lambda x: (len(x), x)) if qid in queries]
        write_gz_jsonl(args.out / f"{name}.jsonl.gz", rows)
        counts[name] = (len(rows), sum(len(r["relevant"]) for r in rows))

    files = ["corpus.jsonl.gz", "train.jsonl.gz", "test.jsonl.gz"]
    table = "\n".join(f"| `{f}` | {(args.out / f).stat().st_size:,} | "
                      f"`{hashlib.sha256((args.out / f).read_bytes()).hexdigest()}` |" for f in files)
    readme = README.format(n_docs=len(keep), n_judged=len(judged), n_fill=len(fill), seed=args.seed,
                           train_q=counts["train"][0], train_rel=counts["train"][1],
                           test_q=counts["test"][0], test_rel=counts["test"][1], files=table)
    (args.out / "README.md").write_text(readme, encoding="utf-8")
    total = sum((args.out / f).stat().st_size for f in files)
    print(f"{len(keep)} abstracts ({len(judged)} judged + {len(fill)} distractors), train {counts['train']}, "
          f"test {counts['test']}; {total:,} bytes in {args.out}")


README = """# SciFact demo subset

A small subset of **SciFact** (BEIR version) that ships with vectune for `make demo`: scientific claims
(queries) and the paper abstracts that support or refute them (documents).

| item | count |
|---|---:|
| abstracts | {n_docs} ({n_judged} judged by a train or test claim + {n_fill} seeded distractors, seed {seed}) |
| train claims / judged pairs | {train_q} / {train_rel} |
| test claims / judged pairs | {test_q} / {test_rel} |

Every abstract that a train or test claim points at is included, so every claim can be answered.

Files (gzip JSON lines):

- `corpus.jsonl.gz`: `{{"_id", "title", "text"}}` per abstract (`vectune index ... --with-title`).
- `train.jsonl.gz`, `test.jsonl.gz`: `{{"_id", "query", "relevant": [abstract ids]}}` per claim, from the official
  BEIR `qrels/train.tsv` and `qrels/test.tsv`. This is the format of `--train-set` / `--eval-set` and of
  `vectune feedback import` (with `--alias`).

| file | bytes | sha256 |
|---|---:|---|
{files}

Rebuild with `python bench/make_scifact_demo.py` (deterministic: same input, same bytes).

## License and attribution

- **Claims** and their relevance judgements (`train.jsonl.gz`, `test.jsonl.gz`): SciFact by the Allen Institute
  for AI, licensed under the **Creative Commons Attribution 4.0 International (CC BY 4.0)** license
  (<https://creativecommons.org/licenses/by/4.0/>), as stated in `LICENSE.md` of <https://github.com/allenai/scifact>.
- **Abstracts** (`corpus.jsonl.gz`): from the Semantic Scholar S2ORC corpus, licensed under the **Open Data Commons
  Attribution License (ODC-By 1.0)** (<https://opendatacommons.org/licenses/by/1-0/>).
- Changes: a subset of the abstracts was selected (every judged abstract plus seeded distractors); the BEIR
  layout and id scheme were kept; claims were joined with their qrels into one JSON line each.
- Note: before 2023-09-27 the SciFact repository stated CC BY-NC 2.0 for the dataset; the current statement
  (used here) is CC BY 4.0 for claims and ODC-By 1.0 for the abstracts.

Please cite:

- David Wadden, Shanchuan Lin, Kyle Lo, Lucy Lu Wang, Madeleine van Zuylen, Arman Cohan, Hannaneh Hajishirzi.
  *Fact or Fiction: Verifying Scientific Claims.* EMNLP 2020. <https://aclanthology.org/2020.emnlp-main.609/>
- Nandan Thakur, Nils Reimers, Andreas Rücklé, Abhishek Srivastava, Iryna Gurevych. *BEIR: A Heterogeneous
  Benchmark for Zero-shot Evaluation of Information Retrieval Models.* NeurIPS 2021 Datasets and Benchmarks.
  <https://arxiv.org/abs/2104.08663>
"""


if __name__ == "__main__":
    main()
