"""Damaged state files fail loudly, and `vectune recover` finishes the job (issue 22, item 3).

Each state file — the checkpoint ``promotion.json``, the swap's snapshot, the reconciliation journal,
the in-flight marker, the history — is torn in each state it exists in: a rollback (then a promotion)
crashes at a stage boundary while the app writes through the alias, the file is cut in half, and then:

* ``vectune run`` exits 3 naming the file and ``vectune recover``;
* ``vectune recover --alias docs`` sets it aside, rebuilds what it held from what is intact, and finishes;
* the alias holds exactly what the app wrote — every id, payload and vector, the tuned vector the right
  model's encoding of the current text (or the exact vector, in copy mode): 0 wrong against the truth model.

In-process on one embedded Qdrant (the commands share the truth model's client); a crash is an exception
raised at a fault point. The real MiniLM re-encodes (the rollback target's passage model).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import invoke
from tests.helpers.truth import ALIAS, KINDS, Flow, World, as_versions, load_models, share
from vectune.core import faults

pytestmark = pytest.mark.slow  # each case publishes twice with the real MiniLM

STAGES = ("before_verify", "before_final_sync", "before_swap", "after_swap", "reconcile_batch")


class Crash(BaseException):
    """A process killed at a fault point (no handler of vectune's catches it)."""


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.fixture(scope="module")
def texts(corpus_records):
    return [r["text"][:240] for r in corpus_records[:30]]


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    monkeypatch.setenv("VECTUNE_UPSERT_BATCH", "8")  # the window's writes take two reconciliation batches
    monkeypatch.setenv("VECTUNE_COPY_BATCH", "8")
    yield
    faults.HOOKS.clear()


def _world(models, texts, monkeypatch, copy: bool) -> tuple[World, str, str]:
    w = World(models, texts)
    Flow("rollback-copy" if copy else "rollback", w).setup()  # base -> cand: the alias is on cand
    base, cand = as_versions(w, copy)
    share(w, monkeypatch)
    return w, base, cand


#: The app's writes at each stage: every kind, each on its own point (the window's take two batches).
WRITES = {"before_final_sync": [("set_payload", 20), ("delete", 21), ("upsert_new", 1100)],
          "before_swap": [(k, 1000 if k == "upsert_new" else i) for i, k in enumerate(KINDS)]
          + [("set_payload", 12), ("update_vectors_sparse", 13)],
          "after_swap": [("set_payload", 24), ("delete_payload", 25)]}


def _crash(w: World, at: str) -> None:
    """Hooks: the app writes at each stage boundary up to ``at``, where the process dies."""
    fired: set[str] = set()

    def at_stage(stage):
        def fire(**_):
            if stage in fired:
                return
            fired.add(stage)
            if stage == "after_swap":
                w.app_model = "base"  # the app follows the alias to the rolled-back version
            for kind, pid in WRITES.get(stage, ()):
                w.write(kind, pid)
            if stage == at:
                raise Crash(stage)
        faults.HOOKS[stage].append(fire)

    for stage in STAGES[:STAGES.index(at) + 1]:
        at_stage(stage)


def _crashed_rollback(w: World, base: str, at: str) -> None:
    from vectune import Alias
    from vectune.promote.window import announce

    live = w.store.resolve_alias(ALIAS)
    _crash(w, at)
    with pytest.raises(Crash):
        Alias(ALIAS).rollback(to=base)
    faults.HOOKS.clear()
    if w.store.resolve_alias(ALIAS) == live:  # before its swap an exception withdraws the migration notice; a
        announce(w.store, live, base, w.spec, "text", copy=w.copy_mode)  # SIGKILL would leave it: as SIGKILL does


def _tear(path) -> None:
    """Cut a file in half (what a disk or a careless hand does; vectune's own writes are whole or absent)."""
    data = path.read_bytes()
    assert len(data) > 2, path
    path.write_bytes(data[: len(data) // 2])


def _files(settings) -> dict:
    from vectune.observe.history import History
    from vectune.promote.checkpoint import Checkpoint, InFlight

    ck = Checkpoint(settings.run_dir(ALIAS))
    return {"promotion.json": ck.path, "snapshot": ck.snapshot_path, "snapshot copy": ck.snapshot_copy_path,
            "journal": ck.journal_path, "inflight": InFlight(settings.run_dir(ALIAS)).path,
            "history": History(settings.work_dir, ALIAS).path}


def _stopped_loudly(path) -> None:
    out = invoke("run", "--alias", ALIAS, expect=3)
    assert str(path) in out.output and f"vectune recover --alias {ALIAS}" in out.output, out.output


def _settled(settings, w: World, right: str | None, label: str) -> None:
    """After recovery: nothing damaged, no checkpoint, one live collection, and 0 wrong against the truth."""
    from vectune.ops.integrity import state_problems
    from vectune.qdrant import lineage

    assert state_problems(settings, ALIAS) == []
    assert not _files(settings)["promotion.json"].exists()
    states = [meta.get("state") for _, meta in lineage.versions(w.store, ALIAS)]
    assert states.count("live") == 1, states
    total, wrong = w.compare(right)
    print(f"\n{label}: total {total}, wrong {len(wrong)}")
    assert total >= 30 and wrong == [], "\n".join(wrong[:20])


CASES = [  # (file torn, where the rollback crashed, copy mode)
    ("promotion.json", "before_swap", False),
    ("promotion.json", "after_swap", False),
    ("promotion.json", "after_swap", True),
    ("promotion.json", "reconcile_batch", False),
    ("snapshot", "before_swap", False),
    ("snapshot", "after_swap", False),
    ("snapshot", "after_swap", True),
    ("snapshot", "reconcile_batch", False),
    ("journal", "reconcile_batch", False),
    ("journal", "reconcile_batch", True),
    ("inflight", "after_swap", False),
    ("history", "after_swap", False),
]


@pytest.mark.parametrize(("torn", "at", "copy"), CASES)
def test_a_torn_state_file_stops_the_run_and_recover_finishes_exactly(settings, models, texts, monkeypatch, torn, at,
                                                                      copy):
    from vectune.promote.checkpoint import InFlight

    w, base, cand = _world(models, texts, monkeypatch, copy)
    _crashed_rollback(w, base, at)
    files = _files(settings)
    if torn == "inflight":  # a run's marker (the rollback command keeps none): a run killed in its stage
        InFlight(settings.run_dir(ALIAS)).set("run-killed", "promote")
    if torn == "history":
        from vectune.observe.history import History

        History(settings.work_dir, ALIAS).append({"event": "crash", "reason": "a line to tear"})
    assert files[torn].exists(), f"{torn} does not exist after a crash at {at}"
    _tear(files[torn])
    _stopped_loudly(files[torn])
    if at in ("after_swap", "reconcile_batch"):  # the app keeps writing through the alias meanwhile
        w.write("overwrite_payload", 26)
        w.write("update_vectors_named", 27)
    out = json.loads(invoke("recover", "--alias", ALIAS, "--json").stdout)
    assert any(p.startswith(str(files[torn])) and ".torn-" in p for p in out["set_aside"]), out
    assert w.store.resolve_alias(ALIAS) == base == out["live_collection"]
    _settled(settings, w, None if copy else "base", f"{torn} torn after a crash at {at}{' (copy)' if copy else ''}")


def test_a_torn_checkpoint_before_the_snapshot_drops_the_publish_and_the_rollback_runs_again(settings, models, texts,
                                                                                             monkeypatch):
    """Torn before there is a snapshot (the rollback was verifying): nothing tells what it was doing, and the
    alias never moved, so `recover` withdraws it; run again, the rollback completes."""
    from vectune import Alias

    w, base, cand = _world(models, texts, monkeypatch, copy=False)
    _crashed_rollback(w, base, "before_final_sync")
    files = _files(settings)
    assert not files["snapshot"].exists()
    _tear(files["promotion.json"])
    _stopped_loudly(files["promotion.json"])
    out = json.loads(invoke("recover", "--alias", ALIAS, "--json").stdout)
    assert out["live_collection"] == cand and out["rebuilt"]["withdrawn"]["to"] == base
    assert "migrating_to" not in w.store.metadata(cand)
    total, wrong = w.compare("cand")
    assert wrong == [], wrong
    Alias(ALIAS).rollback(to=base)
    w.app_model = "base"
    _settled(settings, w, "base", "checkpoint torn before the snapshot, then the rollback run again")


def test_a_torn_checkpoint_of_a_promotion_being_built_deletes_its_collection(settings, models, texts, monkeypatch):
    """A promotion killed mid-build with its checkpoint torn: the half-built collection is deleted (in two
    phases), the alias stays where it was with every write the app made meanwhile."""
    from vectune.config.sections import PromoteConfig
    from vectune.models.store import ModelStore
    from vectune.promote.promotion import Promoter

    w = World(models, texts)
    Flow("promote-copy", w).setup()  # docs--cand created (building), the alias on base
    base, cand = as_versions(w, copy=True)
    share(w, monkeypatch)
    w.copy_mode = True

    def page(**_):
        w.write("set_payload", 3)
        w.write("upsert_new", 1200)
        raise Crash("reindex_page")

    faults.HOOKS["reindex_page"].append(page)
    promoter = Promoter(w.store, ALIAS, PromoteConfig(upsert_batch=8, copy_batch=8), ModelStore.from_settings(settings),
                        settings.run_dir(ALIAS))
    with pytest.raises(Crash):
        promoter.build_and_publish(None, base, cand, w.spec, w.store.metadata(cand), "text", run_id="run-killed")
    faults.HOOKS.clear()
    files = _files(settings)
    assert json.loads(files["promotion.json"].read_text())["stage"] == "building"
    _tear(files["promotion.json"])
    _stopped_loudly(files["promotion.json"])
    out = json.loads(invoke("recover", "--alias", ALIAS, "--json").stdout)
    assert out["recovered"]["orphans_deleted"] == [cand] and not w.store.collection_exists(cand)
    _settled(settings, w, None, "promotion checkpoint torn mid-build")


def test_a_torn_in_flight_marker_alone(settings, models, texts, monkeypatch):
    """A run killed while training left a marker that is now torn: the run stops naming it; recover records
    the crash (stage unknown) and sets the marker aside; nothing else changes."""
    from vectune.observe.history import History
    from vectune.promote.checkpoint import InFlight

    w, base, cand = _world(models, texts, monkeypatch, copy=False)
    marker = InFlight(settings.run_dir(ALIAS))
    marker.set("run-killed", "train")
    _tear(marker.path)
    _stopped_loudly(marker.path)
    out = json.loads(invoke("recover", "--alias", ALIAS, "--json").stdout)
    assert out["live_collection"] == cand and not marker.path.exists()
    crash = [e for e in History(settings.work_dir, ALIAS).read() if e["event"] == "crash"]
    assert crash and "damaged in-flight marker" in crash[-1]["reason"]
    assert w.compare("cand")[1] == []


def test_both_snapshot_copies_torn_after_the_swap_needs_abandon_window(settings, models, texts, monkeypatch):
    """The one case that cannot be finished from what is left: a swap whose every snapshot copy is gone. `recover`
    says so (exit 3) and changes nothing; `--abandon-window` gives the window's writes up as documented: only
    points the window wrote differ from the truth, and no tuned vector belongs to another text."""
    w, base, cand = _world(models, texts, monkeypatch, copy=False)
    _crashed_rollback(w, base, "after_swap")
    files = _files(settings)
    _tear(files["snapshot"])
    _tear(files["snapshot copy"])
    _stopped_loudly(files["snapshot"])
    out = invoke("recover", "--alias", ALIAS, expect=3)
    assert "--abandon-window" in out.output and "lost its snapshot" in out.output
    out = json.loads(invoke("recover", "--alias", ALIAS, "--abandon-window", "--json").stdout)
    assert out["rebuilt"]["window"].startswith("abandoned")
    from vectune.ops.integrity import state_problems

    assert state_problems(settings, ALIAS) == []
    total, wrong = w.compare("base")
    window = {str(1000 if k == "upsert_new" else i) for i, k in enumerate(KINDS)} | {"12", "13"}
    assert wrong and {x.split(":")[0] for x in wrong} <= window, wrong
    assert not any("marker" in x for x in wrong)
    assert w.inconsistent("base") == []
