"""`vectune recover`: finish the job when a state file is damaged, from what is intact.

A run stops with exit code 3 on a state file it cannot read (:mod:`vectune.ops.integrity`).
``vectune recover --alias A`` then, under the alias lease:

1. sets each damaged file aside — renamed ``<name>.torn-<time>`` beside it, never deleted; a
   history's unreadable lines move to ``<alias>.jsonl.torn-<time>`` and every readable event stays;
2. rebuilds what it held from what is intact:

   * **the snapshot** (``promotion-snapshot.json.gz``): from its copy, written beside it before
     every swap (``promotion-snapshot.copy.json.gz``);
   * **the reconciliation journal**: nothing to rebuild — it only records progress; the window is
     reconciled again from the snapshot (reconciliation is idempotent: a point already carried over
     reads as the app's own write and is left as it is);
   * **the checkpoint** (``promotion.json``): from the snapshot (which collections, copy or
     re-encode, which vector) and the target's lineage (its passage model, its text field); whether
     the swap happened is read from the alias itself. Without a readable snapshot, a publish that had
     not swapped is withdrawn (the next run trains again; a rollback is run again);
   * **the in-flight marker**: the crash it reported is recorded in the history (stage unknown);

3. runs crash recovery as the next run would (:func:`vectune.ops.recover.recover`): a swapped
   publish's window is reconciled, an unswapped one resumed, leftovers deleted.

One case cannot be finished from what is left: a publish that swapped and then lost both copies
of its snapshot (and its journal does not say it finished). The writes made in its window cannot
be found any more; ``--abandon-window`` gives them up (they stay in the old collection) and
completes the rest. The same flag gives them up when they cannot be re-encoded because the
target's model is gone from the model store.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from vectune.config.settings import Settings
from vectune.core.clock import now
from vectune.core.jsonl import set_aside, write_atomic, write_json_atomic
from vectune.errors import BadInput, TornState
from vectune.observe.history import History
from vectune.ops.recover import recover
from vectune.ops.session import hold
from vectune.promote.checkpoint import Checkpoint, InFlight
from vectune.promote.window import finish, withdraw
from vectune.qdrant import lineage
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def repair(settings: Settings, alias: str, abandon_window: bool = False) -> dict:
    """Set damaged state files aside, rebuild what they held from what is intact, and recover (see module doc).

    Args:
        settings: all settings.
        alias: the alias.
        abandon_window: when a swapped publish lost every copy of its snapshot, give up the writes
            made in its window and finish the rest.

    Returns:
        ``{"set_aside": [...], "rebuilt": {...}, "recovered": {...}, "live_collection": ...}``.

    Raises:
        BadInput: a swapped publish's window cannot be found and ``abandon_window`` was not given.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = settings.run_dir(alias)
    ckpt, inflight, history = Checkpoint(run_dir), InFlight(run_dir), History(settings.work_dir, alias)
    out: dict = {"alias": alias, "set_aside": [], "rebuilt": {}}
    with Store.open(settings) as store:
        live = store.resolve_alias(alias)
        with hold(store, settings, alias, "recover-" + uuid.uuid4().hex[:6], recover_first=False,
                  expect_live=live) as session:
            lock = session.lock
            lock.fence("recover damaged state")
            aside = history.set_aside_torn(stamp)
            if aside:
                out["set_aside"].append(str(aside))
            crash = None
            try:
                inflight.load()
            except TornState:
                out["set_aside"].append(str(set_aside(inflight.path, stamp)))
                crash = {"event": "crash", "run_id": None, "stage": None,
                         "reason": "a run stopped and left a damaged in-flight marker (stage unknown)"}
            _snapshot(ckpt, stamp, out)
            _journal(ckpt, stamp, out)
            _checkpoint(store, settings, alias, ckpt, stamp, out, abandon_window, lock)
            if crash:
                history.append(crash)
            rec = recover(store, settings, alias, store.resolve_alias(alias), lock)
            out["recovered"] = rec.found
            if rec.done:
                out["finished"] = rec.reason
            out["live_collection"] = store.resolve_alias(alias)
    history.append({"event": "recover", "set_aside": out["set_aside"], "rebuilt": out["rebuilt"],
                    "live_collection": out["live_collection"]})
    return out


def _snapshot(ckpt: Checkpoint, stamp: str, out: dict) -> None:
    """A damaged snapshot: put the copy in its place, or (no usable copy) set both aside."""
    try:
        Checkpoint.read_snapshot(ckpt.snapshot_path)
        return
    except TornState:
        pass
    out["set_aside"].append(str(set_aside(ckpt.snapshot_path, stamp)))
    try:
        copy = Checkpoint.read_snapshot(ckpt.snapshot_copy_path)
    except TornState:
        copy = None
        out["set_aside"].append(str(set_aside(ckpt.snapshot_copy_path, stamp)))
    if copy is not None:
        write_atomic(ckpt.snapshot_path, ckpt.snapshot_copy_path.read_bytes())
        out["rebuilt"]["snapshot"] = f"from its copy {ckpt.snapshot_copy_path}"
    else:
        out["rebuilt"]["snapshot"] = None  # lost: _checkpoint decides whether that matters


def _journal(ckpt: Checkpoint, stamp: str, out: dict) -> None:
    """A damaged journal: set aside; the window is reconciled again from the snapshot."""
    if not ckpt.journal_path.exists():
        return
    try:
        ckpt.check_journal()
    except TornState:
        out["set_aside"].append(str(set_aside(ckpt.journal_path, stamp)))
        out["rebuilt"]["journal"] = "reconciliation restarts from the snapshot (idempotent)"


def _checkpoint(store: Store, settings: Settings, alias: str, ckpt: Checkpoint, stamp: str, out: dict,
                abandon_window: bool, lock) -> None:
    """Rebuild a damaged ``promotion.json`` from the snapshot and lineage; handle a swap whose window is lost."""
    state = None
    try:
        state = ckpt.load()
    except TornState:
        out["set_aside"].append(str(set_aside(ckpt.path, stamp)))
    snap = ckpt.load_snapshot() if ckpt.snapshot_path.exists() else None
    live = store.resolve_alias(alias)
    if state is None and snap is not None and snap.source and snap.target:
        state = _from_snapshot(store, settings, alias, snap, live)
        if state is not None:
            write_json_atomic(ckpt.path, state)
            out["rebuilt"]["checkpoint"] = {k: state[k] for k in ("kind", "target", "parent", "stage", "copy")}
        else:  # the alias is on neither collection any more: a stale snapshot, kept aside
            for p in (ckpt.snapshot_path, ckpt.snapshot_copy_path, ckpt.journal_path):
                if p.exists():
                    out["set_aside"].append(str(set_aside(p, stamp)))
        return
    if state is not None and snap is not None:
        if not (abandon_window and state.get("stage") == "swapped" and live == state.get("target")):
            return  # intact enough: recovery does the rest
        target, parent = live, state.get("parent")  # asked to give the window up (e.g. its model is gone)
    else:  # no snapshot. Swapped (the alias is on the target, the old collection still announces it)?
        target, parent = _swapped_without_snapshot(store, alias, live, state)
    if target is None:
        if state is not None and state.get("stage") in ("building", "built", "verified"):
            return  # not swapped: the resumed publish takes a new snapshot
        if state is None:
            _withdraw_unswapped(store, alias, live, lock, out)
        return
    _, finished = _journal_finished(ckpt)
    if finished:
        out["rebuilt"]["window"] = "the journal says the window was reconciled already"
    elif not abandon_window:
        raise BadInput(f"the publish that swapped '{alias}' to '{target}' lost its snapshot: the writes made in its "
                       f"window cannot be found any more (they are in '{parent}'). Restore "
                       f"{ckpt.snapshot_path} from a backup and run `vectune recover --alias {alias}` again, or "
                       f"give those writes up with `vectune recover --alias {alias} --abandon-window`")
    else:
        out["rebuilt"]["window"] = f"abandoned: writes made in the window stay in '{parent}' only"
        logger.warning("giving up the writes made in the window of the swap '%s' -> '%s' (they stay in '%s')",
                       parent, target, parent)
    finish(store, parent if parent and store.collection_exists(parent) else target, target, lock)  # markers go
    lock.fence("set state")
    lineage.set_state(store, target, "live")
    if parent and store.collection_exists(parent):
        lineage.set_state(store, parent, "retired", retired_at=now())
    for p in (ckpt.path, ckpt.journal_path):
        if p.exists():
            out["set_aside"].append(str(set_aside(p, stamp)))


def _journal_finished(ckpt: Checkpoint) -> tuple[set[str], bool]:
    """The journal's progress (empty when there is none or it is damaged)."""
    try:
        return ckpt.check_journal()
    except TornState:
        return set(), False


def _from_snapshot(store: Store, settings: Settings, alias: str, snap, live: str) -> dict | None:
    """The checkpoint a publish would have written, from its snapshot, the target's lineage and the alias."""
    source, target = snap.source, snap.target
    if not store.collection_exists(target) or live not in (source, target):
        return None
    meta = store.metadata(target)
    swapped = live == target
    rollback = (meta.get("rolled_back_from") == source) if swapped else meta.get("state") not in ("building",
                                                                                                   "verified")
    shape = snap.shape
    return {"kind": "rollback" if rollback else "promotion", "run_id": "unknown (checkpoint rebuilt by recover)",
            "alias": alias, "target": target, "parent": source,
            "model_tag": lineage.passage_model(meta) or meta.get("model_ref"),
            "dense_vector": shape.managed if shape else meta.get("dense_vector", ""),
            "text_field": meta.get("text_field") or settings.collection.text_field,
            "copy": bool(shape and shape.copy), "stage": "swapped" if swapped else "verified",
            "offset": None, "done": None}


def _swapped_without_snapshot(store: Store, alias: str, live: str, state: dict | None) -> tuple[str | None,
                                                                                                 str | None]:
    """``(target, parent)`` of a publish that swapped and whose snapshot is gone, else ``(None, None)``."""
    if state is not None:
        if state.get("target") == live and state.get("stage") == "swapped":
            return live, state.get("parent")
        return None, None
    for name, meta in lineage.versions(store, alias):
        if name != live and (meta.get("migrating_to") or {}).get("target") == live:
            return live, name
    return None, None


def _withdraw_unswapped(store: Store, alias: str, live: str, lock, out: dict) -> None:
    """No checkpoint and no snapshot: a publish that had announced itself but not swapped is withdrawn."""
    target = (store.metadata(live).get("migrating_to") or {}).get("target")
    if not target:
        return
    lock.fence("withdraw the migration")
    withdraw(store, live, target)
    out["rebuilt"]["withdrawn"] = {"from": live, "to": target,
                                   "why": "its checkpoint and snapshot are gone; it had not swapped"}


__all__ = ["repair"]
