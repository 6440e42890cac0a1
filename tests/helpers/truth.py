"""The truth model of exact writes: a live collection behind an alias, an app that writes through it, the truth.

Shared by the write matrix (``tests/promote/test_exact.py``) and the seeded soak (``tests/promote/test_soak.py``).
"""

from __future__ import annotations

import numpy as np

from vectune.core import faults

ALIAS = "docs"
DENSE = "dense"
BATCH = 8
N_POINTS = 30
KINDS = ("upsert_new", "upsert_changed", "same_payload_new_vectors", "update_vectors_named",
         "update_vectors_sparse", "set_payload", "overwrite_payload", "delete_payload", "delete", "delete_recreate")
PROMOTE_STAGES = ("start", "reindex_page", "before_verify", "before_final_sync", "before_swap", "after_swap", "after")
PUBLISH_STAGES = ("start", "before_verify", "before_final_sync", "before_swap", "after_swap", "after")


# ----------------------------------------------------------------------------------------- models
class Memo:
    """An encoder with memoised passage encodings (deterministic; the same text gives the same vector)."""

    def __init__(self, enc, perm: np.ndarray | None = None, ref: str = "bundled:all-MiniLM-L6-v2"):
        self.enc, self.perm, self.ref = enc, perm, ref
        self.cache: dict[str, np.ndarray] = {}
        self.query_prompt = ""
        self.max_seq_length = enc.max_seq_length
        self.dim = enc.dim
        self.calls = 0

    def encode_passages(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.calls += 1
            out = self.enc.encode_passages(todo)
            if self.perm is not None:
                out = out[:, self.perm]
            self.cache.update(zip(todo, out))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    encode_queries = encode_passages


class HashModel:
    """A stand-in "model" for copy-mode worlds: a fixed unit vector per text (no torch). Copy mode never
    re-encodes, so the vectors only need to be data that differ by text."""

    def __init__(self, ref: str = "hash"):
        self.ref, self.dim, self.query_prompt, self.max_seq_length, self.calls = ref, 384, "", 64, 0

    def encode_passages(self, texts):
        import hashlib

        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.ref}|{t}".encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32).reshape(len(out), self.dim)

    encode_queries = encode_passages


def hash_models() -> dict:
    return {"base": HashModel("base"), "cand": HashModel("cand")}


def load_models() -> dict:
    """The real pair of models of the exact-write tests: MiniLM at 64 tokens, and MiniLM with its dimensions
    permuted (another deterministic model), with every text the app writes encoded once."""
    from vectune.config.settings import Settings
    from vectune.models.store import ModelStore

    base = ModelStore.from_settings(Settings()).load("bundled:all-MiniLM-L6-v2", max_seq_length=64)
    perm = np.random.default_rng(7).permutation(base.dim)
    out = {"base": Memo(base), "cand": Memo(base, perm, ref="cand")}
    for m in out.values():
        m.encode_passages([app_text(n) for n in range(1, 80)])
    return out


def app_text(n: int) -> str:
    words = np.random.default_rng(n).choice(
        ["alias", "vector", "payload", "python", "decorator", "generator", "sparse", "window", "swap"], 8)
    return f"Written by the app, number {n}: " + " ".join(words)


# ----------------------------------------------------------------------------------------- the world
def _unit(v) -> list[float]:
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


class World:
    """A live collection behind the alias, an app that writes through it, and the truth."""

    def __init__(self, models, texts, named: bool = True, seed: int = 0):
        from qdrant_client import models as qm

        from vectune.config.settings import load_settings
        from vectune.qdrant.store import DenseSpec, Store

        self.models = models
        self.store = Store.open(load_settings(qdrant_path=":memory:"))
        self.c = self.store.client
        self.named = named
        self.managed = DENSE if named else ""
        self.spec = DenseSpec(self.managed, 384, "Cosine")
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.swapped = False  # the app encodes with the target's model once the alias points at it
        self.app_model = "base"
        self.truth: dict[str, dict] = {}
        #: Every (text, tuned vector) pair ever written together (by the app, or the original index): in copy
        #: mode a point's tuned vector must be one written with the text it ends with.
        self.pairs: dict[str, list] = {}
        self.errors: list[str] = []
        dense = qm.VectorParams(size=384, distance=qm.Distance.COSINE)
        vectors = {DENSE: dense, "img": qm.VectorParams(size=8, distance=qm.Distance.COSINE)} if named else dense
        self.base = f"{ALIAS}--base"
        self.c.create_collection(self.base, vectors_config=vectors,
                                 sparse_vectors_config={"sp": qm.SparseVectorParams()},
                                 metadata={"vectune": {"alias": ALIAS, "model_ref": "base", "state": "live",
                                                       "created_at": "2024-01-01T00:00:00+00:00"}})
        emb = models["base"].encode_passages(texts)
        pts = []
        for i, (t, e) in enumerate(zip(texts, emb)):
            pts.append(self._point(i, {"text": t, "tag": f"t{i}", "doc_id": f"d{i}"}, e))
        self.c.upsert(self.base, pts)
        for p in pts:
            self._truth_upsert(p)
        self.store.swap_alias(ALIAS, self.base)

    # -- points -------------------------------------------------------------------------------------
    def _sparse(self):
        from qdrant_client import models as qm

        idx = sorted(self.rng.choice(1000, size=4, replace=False).tolist())
        return qm.SparseVector(indices=idx, values=[round(float(x), 4) for x in self.rng.random(4) + 0.1])

    def _vectors(self, dense) -> dict:
        v = {("" if not self.named else DENSE): [float(x) for x in dense], "sp": self._sparse()}
        if self.named:
            v["img"] = self.rng.normal(size=8).tolist()
        return v

    def _point(self, pid, payload, dense):
        from qdrant_client import models as qm

        return qm.PointStruct(id=pid, vector=self._vectors(dense), payload=payload)

    def app_encoding(self, text: str) -> list[float]:
        return [float(x) for x in self.models[self.app_model].encode_passages([text])[0]]

    def _truth_upsert(self, p) -> None:
        vec = p.vector if isinstance(p.vector, dict) else {"": p.vector}
        self.truth[str(p.id)] = {"payload": dict(p.payload), "vectors": {k: self._norm(k, v) for k, v in vec.items()}}
        if vec.get(self.managed) is not None:
            self._pair(p.payload.get("text"), vec[self.managed])

    def _pair(self, text, vector) -> None:
        if isinstance(text, str):
            self.pairs.setdefault(text, []).append(self._norm(self.managed, vector))

    def _norm(self, name, v):
        if hasattr(v, "indices"):
            order = np.argsort(v.indices)
            return ("sparse", [int(v.indices[i]) for i in order], [float(v.values[i]) for i in order])
        return ("dense", _unit(v))

    # -- the app: one write of each kind, through the alias, mirrored in the truth --------------------
    def fresh_text(self, what: str) -> str:
        """The app's next new text (the n-th is the same in every run: its encodings are made once)."""
        self.n += 1
        return app_text(self.n)

    def write(self, kind: str, pid, writer=None) -> None:
        """Make one write of ``kind`` to point ``pid`` through the alias (or ``writer``).

        The truth takes the write as the app meant it, in order; when Qdrant rejects it (an edit of
        a point the alias's collection does not hold), the rejection is recorded and the truth keeps
        the write: a run only passes if vectune leaves the alias as if it had been applied.
        """
        from qdrant_client import models as qm

        w = writer or _Plain(self.c)
        key = str(pid)
        cur = self.truth.get(key)
        calls = []
        if kind in ("upsert_new", "upsert_changed", "delete_recreate"):
            if kind == "delete_recreate":
                calls.append(lambda: w.delete(qm.PointIdsList(points=[pid])))
                self.truth.pop(key, None)
            text = self.fresh_text(kind)
            p = self._point(pid, {"text": text, "tag": f"new{self.n}", "doc_id": f"app-{self.n}"},
                            self.app_encoding(text))
            calls.append(lambda: w.upsert([p]))
            self._truth_upsert(p)
        elif kind == "same_payload_new_vectors":
            if cur is None:
                return self.errors.append(f"{kind} {pid}: no such point, not written")
            payload = dict(cur["payload"])
            dense = (self.app_encoding(payload.get("text", "")) if not self.copy_mode
                     else self.rng.normal(size=384).tolist())
            p = self._point(pid, payload, dense)
            calls.append(lambda: w.upsert([p]))
            self._truth_upsert(p)
        elif kind in ("update_vectors_named", "update_vectors_sparse"):
            name = "img" if (kind == "update_vectors_named" and self.named) else "sp"
            value = self.rng.normal(size=8).tolist() if name == "img" else self._sparse()
            calls.append(lambda: w.update_vectors([qm.PointVectors(id=pid, vector={name: value})]))
            if cur is not None:
                cur["vectors"][name] = self._norm(name, value)
        elif kind == "set_payload":
            text = self.fresh_text(kind)
            body = {"text": text, "tag": f"set{self.n}"}
            calls.append(lambda: w.set_payload(body, [pid]))
            if cur is not None:
                cur["payload"].update(body)
            calls += self._follow_text(w, pid, text)
        elif kind == "overwrite_payload":
            text = self.fresh_text(kind)
            body = {"text": text, "other": self.n}
            calls.append(lambda: w.overwrite_payload(body, [pid]))
            if cur is not None:
                cur["payload"] = dict(body)
            calls += self._follow_text(w, pid, text)
        elif kind == "delete_payload":
            calls.append(lambda: w.delete_payload(["tag"], [pid]))
            if cur is not None:
                cur["payload"].pop("tag", None)
        elif kind == "delete":
            calls.append(lambda: w.delete(qm.PointIdsList(points=[pid])))
            self.truth.pop(key, None)
        else:
            raise AssertionError(kind)
        for call in calls:
            try:
                call()
            except Exception as e:  # noqa: BLE001 - Qdrant rejects edits of points it does not hold
                if isinstance(e, KeyError) or "not found" in str(e).lower() or "404" in str(e):
                    self.errors.append(f"{kind} {pid}: rejected ({type(e).__name__})")
                else:
                    raise

    def _follow_text(self, w, pid, text) -> list:
        """A well-behaved app re-encodes a text it changed, with the passage model it resolved (vectune
        re-embeds for the new collection anyway; a rollback trusts the vectors a version holds)."""
        from qdrant_client import models as qm

        if str(pid) not in self.truth:
            return []
        v = self.app_encoding(text)
        self.truth[str(pid)]["vectors"][self.managed] = self._norm(self.managed, v)
        self._pair(text, v)
        return [lambda: w.update_vectors([qm.PointVectors(id=pid, vector={self.managed: v} if self.named else v)])]

    copy_mode = False

    # -- checking -----------------------------------------------------------------------------------
    def compare(self, right: str | None) -> tuple[int, list[str]]:
        """``(points, [what is wrong])`` of the alias's collection against the truth.

        Args:
            right: the model whose encoding of the current text the tuned vector must equal; None:
                the exact vector the app (or the original collection) wrote.
        """
        from vectune.promote.mark import MARK

        coll = self.store.resolve_alias(ALIAS)
        got = {}
        offset = None
        while True:
            recs, offset = self.c.scroll(coll, limit=256, offset=offset, with_payload=True, with_vectors=True)
            got.update({str(r.id): r for r in recs})
            if offset is None:
                break
        wrong = []
        for key in sorted(set(got) | set(self.truth)):
            t, g = self.truth.get(key), got.get(key)
            if t is None or g is None:
                wrong.append(f"{key}: {'resurrected' if t is None else 'lost'}")
                continue
            if MARK in (g.payload or {}):
                wrong.append(f"{key}: marker left in the payload")
            if {k: v for k, v in (g.payload or {}).items() if k != MARK} != t["payload"]:
                wrong.append(f"{key}: payload {g.payload} != {t['payload']}")
            gv = g.vector if isinstance(g.vector, dict) else {"": g.vector}
            names = set(gv) | set(t["vectors"])
            for name in sorted(names):
                if name == self.managed and right is not None:
                    want = ("dense", _unit(self.models[right].encode_passages([t["payload"].get("text", "")])[0]))
                else:
                    want = t["vectors"].get(name)
                have = self._norm(name, gv[name]) if gv.get(name) is not None else None
                if not _same(have, want):
                    wrong.append(f"{key}: vector {name or 'default'!r} differs")
        wrong += self.inconsistent(right, got)
        return len(got), wrong

    def inconsistent(self, right: str | None, got: dict | None = None) -> list[str]:
        """The invariant of issue 22 (item 5): no point whose tuned vector belongs to another text.

        Re-encoding (``right`` a model): the tuned vector is that model's encoding of the point's text. Copy
        mode (``right`` None): it is a vector that was written together with the point's text (by the app,
        or by the original index). Holds even where the documented cooperation cases leave a point inexact.
        """
        if got is None:
            coll = self.store.resolve_alias(ALIAS)
            got = {str(r.id): r for r in self.c.scroll(coll, limit=10_000, with_payload=True, with_vectors=True)[0]}
        out = []
        for key, g in sorted(got.items()):
            text = (g.payload or {}).get("text")
            gv = g.vector if isinstance(g.vector, dict) else {"": g.vector}
            if not isinstance(text, str) or gv.get(self.managed) is None:
                continue
            have = self._norm(self.managed, gv[self.managed])
            if right is not None:
                ok = _same(have, ("dense", _unit(self.models[right].encode_passages([text])[0])))
            else:
                ok = any(_same(have, v) for v in self.pairs.get(text, ()))
            if not ok:
                out.append(f"{key}: tuned vector belongs to another text than {text[:40]!r}")
        return out


class _Plain:
    """The plain client writing through the alias."""

    def __init__(self, c):
        self.c = c

    def upsert(self, points):
        self.c.upsert(ALIAS, points=points)

    def delete(self, selector):
        self.c.delete(ALIAS, points_selector=selector)

    def update_vectors(self, points):
        self.c.update_vectors(ALIAS, points=points)

    def set_payload(self, payload, points):
        self.c.set_payload(ALIAS, payload=payload, points=points)

    def overwrite_payload(self, payload, points):
        self.c.overwrite_payload(ALIAS, payload=payload, points=points)

    def delete_payload(self, keys, points):
        self.c.delete_payload(ALIAS, keys=keys, points=points)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a[0] != b[0]:
        return False
    if a[0] == "sparse":
        return a[1] == b[1] and np.allclose(a[2], b[2], atol=1e-5)
    return bool(np.allclose(a[1], b[1], atol=2e-4))


# ----------------------------------------------------------------------------------------- flows
class Flow:
    """One publish through which writes must survive: a promotion, a rollback or a roll-forward."""

    def __init__(self, name: str, world: World):
        self.name, self.w = name, world
        self.copy = name.endswith("copy")
        world.copy_mode = self.copy
        self.target = f"{ALIAS}--cand"
        self.stats = None

    @property
    def right(self) -> str | None:
        if self.copy:
            return None
        return "base" if self.name.startswith("rollback") else "cand"

    def setup(self) -> None:
        """Everything before the publish under test (a rollback needs a promotion first)."""
        from vectune.promote.publish import publish

        w = self.w
        w.store.create_like(w.base, self.target, w.spec, 384, {"alias": ALIAS, "model_ref": "cand",
                                                                "state": "building"})
        if self.name.startswith("promote"):
            return
        from vectune.promote.build import build

        enc = None if self.copy else w.models["cand"]
        build(w.store, enc, w.base, self.target, w.spec, "text", BATCH)
        publish(w.store, enc, w.base, self.target, ALIAS, w.spec, "text", BATCH)
        w.swapped, w.app_model = True, "cand"
        if self.name.startswith("rollforward"):
            publish(w.store, None if self.copy else w.models["base"], self.target, w.base, ALIAS, w.spec, "text",
                    BATCH)
            w.app_model = "base"
        w.swapped = False

    def run(self, hook) -> None:
        """The publish under test; ``hook(stage)`` is called at every stage boundary."""
        from vectune.promote.build import build
        from vectune.promote.publish import publish

        w = self.w
        src, dst = {"promote": (w.base, self.target), "rollback": (self.target, w.base),
                    "rollforward": (w.base, self.target)}[self.name.split("-")[0]]
        model = {"promote": "cand", "rollback": "base", "rollforward": "cand"}[self.name.split("-")[0]]
        enc = None if self.copy else w.models[model]
        state = {"fired": set()}

        def at(stage):
            def fire(**_):
                if stage not in state["fired"]:
                    state["fired"].add(stage)
                    if stage == "after_swap":
                        w.swapped, w.app_model = True, model
                    hook(stage)
            faults.HOOKS[stage].append(fire)

        for stage in ("reindex_page", "before_verify", "before_final_sync", "before_swap", "after_swap"):
            at(stage)
        hook("start")
        if self.name.startswith("promote"):
            build(w.store, enc, src, dst, w.spec, "text", BATCH)
        self.stats, _ = publish(w.store, enc, src, dst, ALIAS, w.spec, "text", BATCH, verify_sample=3)
        faults.HOOKS.clear()
        w.swapped, w.app_model = True, model
        hook("after")

    def check(self, label: str) -> None:
        total, wrong = self.w.compare(self.right)
        print(f"\n{self.name} {label}: total {total}, wrong {len(wrong)}"
              f" (window writes {self.stats.window_writes}, conflicts {self.stats.window_conflicts},"
              f" rejected {len(self.w.errors)})")
        assert not wrong, "\n".join(wrong[:20])


FLOWS = ("promote", "promote-copy", "rollback", "rollforward", "rollback-copy")


def _ids(world: World, start: int, n: int) -> list:
    return list(range(start, start + n))


# ----------------------------------------------------------------------------------------- ops on the world
BUNDLED = "bundled:all-MiniLM-L6-v2"


def share(world: World, monkeypatch) -> None:
    """Every ``Store.open`` of vectune's commands (CLI, ``Alias``) uses the world's own client, in-process.

    The world's store is embedded Qdrant in memory: the commands act on the same collections the truth
    model watches, and a "crash" is an exception raised at a fault point (the client stays usable).
    """
    from vectune.qdrant.store import Store

    monkeypatch.setattr(Store, "open", classmethod(lambda cls, settings: Store.from_client(world.c)))


def as_versions(world: World, copy: bool) -> tuple[str, str]:
    """Give the world's two collections the lineage vectune's commands read: ``docs--base`` (the bundled
    MiniLM at 64 tokens, which the ``base`` model is) and ``docs--cand`` (a tuned model the model store
    does not hold; its passage vectors are the bundled model's in ``copy`` mode, as after a query-side
    promotion). Returns ``(base, cand)``."""
    from vectune.qdrant import lineage

    base, cand = world.base, f"{ALIAS}--cand"
    common = {"dense_vector": world.managed, "text_field": "text", "max_seq_length": 64}
    base_rec = lineage.record(alias=ALIAS, model_ref=BUNDLED, model_tag="all-minilm-l6-v2", created_by="index",
                              state="live", **common)
    base_rec["created_at"] = "2024-01-01T00:00:00+00:00"
    world.store.set_metadata(base, base_rec)
    if world.store.collection_exists(cand):
        cand_rec = lineage.record(alias=ALIAS, model_ref="cand-tag", model_tag="cand-tag", created_by="promote",
                                  parent_collection=base, parent_model=BUNDLED, state="building",
                                  passage_model=BUNDLED if copy else "cand-tag", mode="query" if copy else "full",
                                  **common)
        cand_rec["created_at"] = "2024-02-01T00:00:00+00:00"
        live = world.store.resolve_alias(ALIAS)
        cand_rec["state"] = "live" if live == cand else "building"
        if live == cand:
            base_rec["state"] = "retired"
            world.store.set_metadata(base, base_rec)
        world.store.set_metadata(cand, cand_rec)
    return base, cand
