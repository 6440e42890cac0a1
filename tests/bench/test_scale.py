"""bench/scale.py's own arithmetic: exact chunked top-k, the capped corpus, log-log slopes, the measured child,
the rows of a small collection, the cycles' command lines (only options `vectune run` has), the gate comparison.

The benchmark's numbers are only as good as these helpers; the measurements themselves are not tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

scale = pytest.importorskip("scale")


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_top_matches_vectune_rank_across_chunks():
    from vectune.pipeline.evaluate import rank

    rng = np.random.default_rng(0)
    corpus, queries = _unit(rng, 1000), _unit(rng, 7)
    got = scale.exact_top(queries, corpus, k=10, chunk=97)  # many chunks, a ragged last one
    want = rank(queries, corpus, 10)
    assert np.array_equal(got, want)


def test_exact_top_on_fewer_rows_than_k():
    rng = np.random.default_rng(1)
    corpus, queries = _unit(rng, 4), _unit(rng, 3)
    got = scale.exact_top(queries, corpus, k=10, chunk=2)
    assert got.shape == (3, 4)
    assert np.array_equal(got, np.argsort(-(queries @ corpus.T), axis=1))


def test_capped_rows_keeps_every_relevant_row_and_the_cap():
    keys = [f"k{i}" for i in range(5000)]
    must = {"k3", "k4999", "k2500"}
    rows = scale.capped_rows(5000, keys, must, 100, seed=0)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100
    assert {keys[i] for i in rows} >= must
    assert np.array_equal(rows, np.sort(rows))
    assert not np.array_equal(rows, scale.capped_rows(5000, keys, must, 100, seed=1))
    assert np.array_equal(scale.capped_rows(50, keys[:50], {"k1"}, 100, seed=0), np.arange(50))


def test_slope_and_extrapolation_of_a_power_law():
    pts = {n: 3.0 * n ** 1.5 for n in (10_000, 100_000, 300_000)}
    assert scale.slope(pts) == pytest.approx(1.5)
    assert scale.extrapolate(pts, 1_000_000) == pytest.approx(3.0 * 1_000_000 ** 1.5)
    assert scale.slope({10: 1.0}) is None


def test_run_measured_reports_rc_peak_rss_and_stages(tmp_path):
    code = ("import sys, time\n"
            "print('stage read ...', file=sys.stderr, flush=True)\n"
            "x = bytearray(60 * 1024 * 1024)\n"
            "time.sleep(1.2)\n"
            "print('stage train ...', file=sys.stderr, flush=True)\n"
            "t = time.process_time()\n"
            "while time.process_time() - t < 0.8: pass\n"
            "print('{\"ok\": 1}')\n")
    r = scale.run_measured([sys.executable, "-c", code], tmp_path / "log.txt")
    assert r["rc"] == 0 and r["stopped"] is None
    assert r["peak_rss_mb"] >= 60
    assert set(r["stages_rss"]) >= {"read", "train"}
    assert r["stages_rss"]["read"]["peak_rss_mb"] >= 60
    assert '{"ok": 1}' in r["stdout"]
    assert r["cpu_s"] >= 0.7
    assert r["stages_rss"]["train"]["cpu_s"] >= 0.5 and r["stages_rss"]["read"]["cpu_s"] < 0.5


def test_run_measured_stops_a_child_past_its_time(tmp_path):
    r = scale.run_measured([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log.txt", timeout=1)
    assert r["stopped"] and r["stopped"].startswith("over 1 s")
    assert r["rc"] != 0 and r["seconds"] < 20


def _beir(n_docs=10):
    keys = [f"d{i}" for i in range(n_docs)]
    return {"keys": keys, "texts": [f"text {k}" for k in keys], "titles": ["" for _ in keys],
            "train": {"q1": {"d7"}, "q2": {"d3", "d9"}}, "test": {"q3": {"d8"}}}


def test_scifact_rows_put_the_labeled_abstracts_first_below_the_corpus():
    beir = _beir()
    assert scale.scifact_rows(beir, 10) == list(range(10))
    assert scale.scifact_rows(beir, 50) == list(range(10))
    rows = scale.scifact_rows(beir, 5)
    assert rows == sorted(rows) and len(rows) == 5
    assert {beir["keys"][i] for i in rows} == {"d3", "d7", "d8", "d9", "d0"}


def test_cycle_commands_use_only_options_vectune_run_has(tmp_path):
    from vectune.cli.cycle import run

    known = {o for p in run.params for o in p.opts + p.secondary_opts}
    args = SimpleNamespace(seed=7, query_epochs=1.0)
    sets = {"train": tmp_path / "train.jsonl", "golden": tmp_path / "golden.jsonl"}
    for tag in scale.CYCLES:
        cmd, env = scale.cycle_command(args, tmp_path / "home", sets, tag)
        opts = [a for a in cmd[cmd.index("run") + 1:] if a.startswith("--")]
        assert set(opts) <= known, set(opts) - known
        assert env["VECTUNE_WHOLE_COLLECTION"] == ("false" if tag == "capped" else "true")
        assert ("--dry-run" in cmd) == (tag == "capped")
        assert ("--eval-set" in cmd) == (tag != "feedback")
        assert cmd[cmd.index("--seed") + 1] == "7" and cmd[cmd.index("--query-epochs") + 1] == "1.0"
    cmd, _ = scale.cycle_command(SimpleNamespace(seed=7, query_epochs=None), tmp_path, sets, "train-set")
    assert "--query-epochs" not in cmd


def _cycle(delta, corpus, whole, steps=10, chosen=3.0, threads=1):
    return {"status": "promoted", "whole_collection": whole,
            "gate": {"live": 0.5, "candidate": 0.5 + delta, "delta": delta, "ci_low": 0.0, "ci_high": 0.1,
                     "p_value": 0.01, "promote": True},
            "evaluation": {"golden": {"live": {"corpus": corpus}}},
            "counts": {"eval_corpus": {"size": corpus, "whole": whole, "capped": not whole},
                       "train": {"steps": steps, "epochs_run": 8.0, "stopped_by": "epochs", "chosen_epoch": chosen,
                                 "val_best": 0.6, "threads": threads, "corpus_in_memory": 100}},
            "timings": {"evaluate": 1.5}}


def test_gate_compare_reports_both_deltas_and_whether_training_matched():
    c = scale.gate_compare(_cycle(0.06, 100_000, True), _cycle(0.05, 20_000, False, threads=2))
    assert c["whole"]["delta"] == 0.06 and c["capped"]["delta"] == 0.05
    assert c["whole"]["corpus"] == 100_000 and c["capped"]["corpus"] == 20_000
    assert c["delta_whole_minus_capped"] == pytest.approx(0.01)
    assert c["same_training"] is True  # the thread count alone does not count
    assert c["capped"]["p"] == 0.01 and c["whole"]["evaluate_s"] == 1.5
    assert scale.gate_compare(_cycle(0.06, 10, True), _cycle(0.05, 10, False, chosen=4.0))["same_training"] is False


def test_cycle_env_reaches_every_cycle_but_cannot_flip_the_comparison(tmp_path):
    sets = {"train": tmp_path / "t.jsonl", "golden": tmp_path / "g.jsonl"}
    args = SimpleNamespace(seed=1, query_epochs=None, cycle_env=["VECTUNE_EVAL_CORPUS_CAP=1000"])
    for tag in scale.CYCLES:
        _, env = scale.cycle_command(args, tmp_path, sets, tag)
        assert env["VECTUNE_EVAL_CORPUS_CAP"] == "1000"
    for bad in (["VECTUNE_WHOLE_COLLECTION=false"], ["EVAL_CORPUS_CAP=1"], ["VECTUNE_SEED"]):
        with pytest.raises(SystemExit):
            scale.cycle_env(SimpleNamespace(cycle_env=bad))


def test_the_capped_twin_runs_only_where_the_gate_scanned_the_collection(tmp_path, monkeypatch):
    (tmp_path / "home-5000").mkdir()
    (tmp_path / "home-5000" / "built.json").write_text("{}")
    ran = []

    def fake_run_cycle(args, n, sets, tag="train-set"):
        ran.append(tag)
        return _cycle(0.02, 1_000, False)

    monkeypatch.setattr(scale, "run_cycle", fake_run_cycle)
    args = SimpleNamespace(parts={"capped"}, work=tmp_path, out=tmp_path / "out.json", keep_homes=True)
    for whole, runs in ((False, []), (True, ["capped"])):
        ran.clear()
        res = {"sizes": {"5000": {"cycle": _cycle(0.03, 5_000, whole)}}}
        entry = scale.run_size(args, {}, {}, 5000, res)
        assert ran == runs
        if whole:
            assert entry["summary"]["gate_delta"] == {"whole": 0.03, "capped": 0.02, "whole_corpus": 5_000,
                                                      "capped_corpus": 1_000, "same_training": True}
        else:
            assert "skipped" in entry["gate_whole_vs_capped"] and "gate_delta" not in entry["summary"]


def test_a_stopped_cycle_still_gives_the_gate_the_scan_and_the_training(tmp_path):
    model = tmp_path / "models" / "m-query"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text('{"eval": {"delta": 0.031, "promote": true, "p_value": 0.002}}')
    log = tmp_path / "cycle.log"
    log.write_text(
        "10:00:01 INFO    vectune.pipeline.cycle: stage train ...\n"
        "10:00:09 INFO    vectune.pipeline.train.query.candidates: query-side candidate query: {'kind': 'encoder', "
        "'steps': 7, 'chosen_epoch': 1.0, 'val_best': 0.7354, 'threads': 1, 'val_curve': [[0.0, 0.7], [1.0, 0.73]]}\n"
        "10:00:20 INFO    vectune.pipeline.evaluate: judged on the whole collection 'scale-src': 300000 points "
        "scanned in 512.3 s\n"
        f"10:00:30 INFO    vectune.models.store: saved model m-query to {model}\n"
        "10:00:40 INFO    vectune.observe.progress: reindex scale--m-query: 2560/300000 (1%), 55.1/s, eta 5400s\n")
    r = {"stages_rss": {"train": {"start_s": 1.0}, "evaluate": {"start_s": 9.0}, "reindex": {"start_s": 30.0}},
         "seconds": 45.0, "stopped": "stopped 15 s into stage reindex (as asked)"}
    rep = scale.from_log(log, r)
    assert rep["status"] == "stopped" and rep["candidate_model"] == "m-query"
    assert rep["gate"]["delta"] == 0.031
    assert rep["counts"]["eval_corpus"] == {"size": 300000, "whole": True, "capped": False, "scan_s": 512.3,
                                            "from": "log"}
    assert rep["counts"]["train"]["steps"] == 7 and rep["counts"]["train"]["chosen_epoch"] == 1.0
    assert rep["counts"]["reindex"]["build"]["upserted"] == 2560
    assert rep["timings"] == {"train": 8.0, "evaluate": 21.0, "reindex": 15.0}
    s = scale.gate_summary({**rep, "whole_collection": True})
    assert s["delta"] == 0.031 and s["p"] == 0.002 and s["train"]["steps"] == 7


def test_stage_table_keeps_the_finished_stages_of_a_cycle_stopped_as_asked():
    done = {"status": "promoted", "timings": {"read": 3.0, "train": 600.0, "reindex": 27.0}, "seconds": 640.0,
            "outside_stages_s": 10.0, "counts": {}}
    cut = {"status": "stopped", "reason": "stopped 900 s into stage reindex (as asked)",
           "timings": {"read": 2000.0, "train": 640.0, "reindex": 900.0}, "seconds": 3600.0, "counts": {}}
    broke = {"status": "stopped", "reason": "RSS 16.1 GiB over 16 GiB in stage read", "timings": {"read": 50.0}}
    t = scale.stage_table({"sizes": {"10000": {"cycle": done}, "300000": {"cycle": cut}, "1000000": {"cycle": broke}}})
    assert t["read"] == {10000: 3.0, 300000: 2000.0} and t["train"] == {10000: 600.0, 300000: 640.0}
    assert t["reindex"] == {10000: 27.0} and t["cycle wall"] == {10000: 640.0}
