"""A seeded random soak: hundreds of mixed writes of every kind across a promotion and then a rollback.

Same world and truth model as ``test_exact.py`` (a tuned dense vector, another named dense
vector and a sparse one, on a real embedded Qdrant with the real MiniLM). Writes land at every
stage boundary — between every pair of reindex pages too. After the promotion and after the
rollback the alias must equal the truth exactly: ``wrong 0``.

With the plain client, the app stays clear of the few sequences the README documents as needing
its cooperation (an edit or delete right after the swap of a point created in the window; an
``overwrite_payload`` right after the swap of a point deleted in the window). Through the
dual-write helper it does not: every write is random.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.truth import ALIAS, KINDS, Flow, World, app_text
from vectune.core import faults

WRITES_PER_STOP = 32
EDITS = ("update_vectors_named", "update_vectors_sparse", "set_payload", "overwrite_payload", "delete_payload",
         "delete")


def _soak(models, texts, dual: bool, seed: int) -> tuple[int, list[str]]:
    from vectune.apps.dualwrite import DualWriter

    rng = np.random.default_rng(seed)
    w = World(models, texts, seed=seed)
    f = Flow("promote", w)
    f.setup()
    writer = (DualWriter(w.c, ALIAS, encoder_for=lambda coll, meta: models["base" if coll == w.base else "cand"])
              if dual else None)
    state = {"writes": 0, "next_id": 5000, "window_new": set(), "window_deleted": set(), "stage": None}

    def some_writes(stage: str) -> None:
        state["stage"] = stage
        known = sorted(set(w.truth) | {str(i) for i in range(40)}, key=lambda k: int(k))
        for _ in range(WRITES_PER_STOP):
            kind = KINDS[rng.integers(len(KINDS))]
            if kind == "upsert_new":
                pid = state["next_id"]
                state["next_id"] += 1
            else:
                pid = int(known[rng.integers(len(known))])
            if not dual and stage == "after_swap" and (
                    (str(pid) in state["window_new"] and kind in EDITS)
                    or (str(pid) in state["window_deleted"] and kind == "overwrite_payload")):
                continue  # documented: exact only with the dual-write helper
            existed = str(pid) in w.truth
            w.write(kind, pid, writer)
            state["writes"] += 1
            if stage == "before_swap":
                key = str(pid)
                if kind == "delete":
                    state["window_new"].discard(key)
                    if existed:
                        state["window_deleted"].add(key)
                elif kind in ("upsert_new", "upsert_changed", "delete_recreate"):
                    state["window_deleted"].discard(key)
                    if not existed:
                        state["window_new"].add(key)

    def hook(stage: str) -> None:
        some_writes(stage)

    # reindex_page fires after every page: write there each time, not once
    faults.HOOKS["reindex_page"].append(lambda **_: some_writes("reindex_page"))
    f.run(hook)
    faults.HOOKS.clear()
    total, wrong = w.compare(f.right)
    print(f"\nsoak ({'dual-write' if dual else 'plain client'}, seed {seed}) after the promotion: "
          f"{state['writes']} writes, total {total}, wrong {len(wrong)}, rejected {len(w.errors)}")
    assert not wrong, "\n".join(wrong[:20])

    # ... then a rollback to the first collection, with writes at every boundary again
    g = Flow("rollback", w)
    state.update(window_new=set(), window_deleted=set())
    w.swapped, w.app_model = True, "cand"
    g.run(hook)
    total, wrong = w.compare(g.right)
    print(f"soak ({'dual-write' if dual else 'plain client'}, seed {seed}) after the rollback: "
          f"{state['writes']} writes in all, total {total}, wrong {len(wrong)}, rejected {len(w.errors)}")
    assert not wrong, "\n".join(wrong[:20])
    return state["writes"], wrong


@pytest.fixture(autouse=True)
def _clean_hooks():
    yield
    faults.HOOKS.clear()


@pytest.mark.slow
@pytest.mark.parametrize("dual", [False, True], ids=["plain", "dual-write"])
def test_random_soak_across_a_promotion_and_a_rollback(models, texts, dual):
    for m in models.values():  # the soak's texts, encoded in batches up front
        m.encode_passages([app_text(n) for n in range(80, 800)])
    writes, wrong = _soak(models, texts, dual, seed=20240611)
    assert writes >= 500 and not wrong
