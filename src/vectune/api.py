"""The Python API: one :class:`Alias` object, used by the CLI and by Python users alike.

::

    from vectune import Alias

    docs = Alias("docs")                          # settings from the environment / .env
    docs = Alias("docs", mode="query", min_delta=0.01, home="/var/lib/vectune")  # or given here
    report = docs.run()                           # one cycle: read, mine, train, evaluate, promote if better
    print(report.status, report.reason)
    docs.status()["live_collection"]; docs.history()[-1]
    collection, encoder = docs.resolve()          # what apps query with (also: docs.resolve(client))
    docs.search("what is MI?", limit=5)           # resolve + query_points, for a quick look
    docs.log("what is MI?", ["doc-17"])            # the app's feedback (or feedback.log with its own client)
    docs.rollback()                               # back to the previous version, synced

Every ``vectune`` command is a thin wrapper over one of these methods. Keyword arguments are
settings by their flat names (``VECTUNE_<NAME>``), exactly as the CLI's options; they override the
environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vectune.apps import feedback as app_feedback
from vectune.apps.dualwrite import DualWriter
from vectune.apps.resolve import Resolved, resolve
from vectune.config.settings import Settings, load_settings
from vectune.observe.history import History
from vectune.observe.report import RunReport
from vectune.ops import feedback as feedback_ops
from vectune.ops import index as index_ops
from vectune.ops import prune as prune_ops
from vectune.ops import repair as repair_ops
from vectune.ops import report_pages
from vectune.ops import rollback as rollback_ops
from vectune.ops import run as run_ops
from vectune.ops import status as status_ops
from vectune.ops.health import run_checks
from vectune.ops.review_server import ReviewServer
from vectune.pipeline.pairs import rejections, review
from vectune.qdrant.store import Store


class Alias:
    """An alias vectune tunes, with every operation on it.

    Args:
        name: the alias apps query.
        settings: all settings (default: from the environment and ``.env``).
        **overrides: settings by flat name (``mode="query"``, ``min_delta=0.01``, ``home=...``); ``None``
            values are ignored, as for an unset CLI option.
    """

    def __init__(self, name: str, settings: Settings | None = None, **overrides: Any):
        if not name:
            raise ValueError("an alias needs a name")
        self.name = name
        given = {k: v for k, v in overrides.items() if v is not None}
        if settings is None:
            self.settings = load_settings(**given)
        else:
            self.settings = settings.replace(**given) if given else settings

    def __repr__(self) -> str:
        return f"Alias({self.name!r})"

    def with_settings(self, **overrides: Any) -> Alias:
        """The same alias with some settings changed (flat names)."""
        return Alias(self.name, self.settings, **overrides)

    # --- the cycle ----------------------------------------------------------------------
    def run(self, *, dry_run: bool = False) -> RunReport:
        """One cycle: read, mine pairs, fine-tune, evaluate, promote if the gate passes.

        Args:
            dry_run: stop after evaluation; never touch the alias.

        Returns:
            The run report (also written to ``<work_dir>/reports/<alias>/``).
        """
        return run_ops.run(self.settings, self.name, dry_run=dry_run)

    # --- versions -----------------------------------------------------------------------
    def rollback(self, to: str | None = None, *, force: bool = False) -> dict:
        """Point the alias back at a previous (or the named) version, synced with the writes made since."""
        return rollback_ops.rollback(self.settings, self.name, to=to, force=force)

    def prune(self, keep: int | None = None, *, delete_models: bool = False, dry_run: bool = False) -> dict:
        """Delete old versions (never the live one or the rollback target); ``keep`` defaults to ``keep_versions``."""
        keep = self.settings.promote.keep_versions if keep is None else keep
        return prune_ops.prune(self.settings, self.name, keep, delete_models, dry_run)

    def recover(self, *, abandon_window: bool = False) -> dict:
        """Finish the job after a damaged state file (``vectune recover``): set it aside, rebuild from what is
        intact (the snapshot's copy, the lineage, the alias), then recover as the next run would."""
        return repair_ops.repair(self.settings, self.name, abandon_window=abandon_window)

    def status(self) -> dict:
        """The live collection, its lineage, every version with its scores, the last run and recent events."""
        return status_ops.status(self.settings, self.name)

    def history(self) -> list[dict]:
        """Every promotion, rejection, rollback and crash of the alias, oldest first.

        Raises:
            TornState: a line of the history cannot be read (``recover()`` moves it aside).
        """
        return History(self.settings.work_dir, self.name).read()

    # --- setting an alias up ------------------------------------------------------------
    def index(self, corpus: Path | str, *, model: str | None = None, with_title: bool = False,
              replace: bool = False) -> dict:
        """Embed a corpus (JSONL file or BEIR folder) into a new collection behind this alias."""
        return index_ops.index(self.settings, Path(corpus), self.name, model=model, with_title=with_title,
                               replace=replace)

    def adopt(self, collection: str, model: str, *, force: bool = False) -> dict:
        """Take over a collection another tool wrote, recording which model made it."""
        return index_ops.adopt(self.settings, collection, self.name, model, force=force)

    # --- what apps use ------------------------------------------------------------------
    def resolve(self, client=None) -> Resolved:
        """``(collection, query encoder)`` the alias stands for now (see :func:`vectune.apps.resolve.resolve`).

        Args:
            client: the app's ``QdrantClient``; default: a connection from the settings, closed afterwards.
        """
        if client is not None:
            return resolve(client, self.name, self.settings)
        with Store.open(self.settings) as store:
            return resolve(store.client, self.name, self.settings)

    def search(self, query: str, limit: int = 10, client=None) -> list[dict]:
        """Search through the alias with its current query model: ``[{"id", "score", "payload"}]``, best first."""
        def go(c) -> list[dict]:
            res = resolve(c, self.name, self.settings)
            spec = res.lineage.get("dense_vector") or None
            vec = res.encoder.encode_queries([query])[0].tolist()
            hits = c.query_points(res.collection, query=vec, using=spec, limit=limit, with_payload=True).points
            return [{"id": h.id, "score": float(h.score), "payload": h.payload} for h in hits]

        if client is not None:
            return go(client)
        with Store.open(self.settings) as store:
            return go(store.client)

    def writer(self, client) -> DualWriter:
        """A dual-write helper over the app's client (exact writes while a promotion publishes)."""
        return DualWriter(client, self.name, self.settings)

    def log(self, query: str, relevant_ids: Any, *, signal: str = "click", weight: float = 1.0, ts: Any = None,
            negative_ids: Any = (), client=None) -> str:
        """Record one feedback event for this alias (see :func:`vectune.apps.feedback.log`)."""
        def go(c) -> str:
            return app_feedback.log(c, self.name, query, relevant_ids, signal=signal, weight=weight, ts=ts,
                                    negative_ids=negative_ids, collection=self.settings.labels.collection)

        if client is not None:
            return go(client)
        with Store.open(self.settings) as store:
            return go(store)

    def log_many(self, rows: Iterable[Mapping], client=None) -> int:
        """Record many feedback events for this alias (rows without an ``alias`` get this one)."""
        rows = [{"alias": self.name, **row} for row in rows]

        def go(c) -> int:
            return app_feedback.log_many(c, rows, collection=self.settings.labels.collection)

        if client is not None:
            return go(client)
        with Store.open(self.settings) as store:
            return go(store)

    def feedback_stats(self) -> dict:
        """Counts of the alias's logged feedback by signal, its time span and the usable share."""
        with Store.open(self.settings) as store:
            return feedback_ops.stats(store, self.name, collection=self.settings.labels.collection)

    # --- people reading pairs -----------------------------------------------------------
    def pairs(self, k: int = 100, seed: int | None = None) -> list[dict]:
        """A seeded sample of the last run's training pairs, each with ``rejected`` (vetoed already?)."""
        run_dir = self.settings.run_dir(self.name)
        rows = review.subsample(review.read_run_sample(run_dir, self.name), k,
                                self.settings.seed if seed is None else seed)
        vetoed = rejections.Rejections(run_dir)
        for r in rows:
            r["rejected"] = vetoed.row_rejected(r)
        return rows

    def rejections(self) -> rejections.Rejections:
        """The pairs and whole queries people vetoed for this alias (later cycles never train on them)."""
        return rejections.Rejections(self.settings.run_dir(self.name))

    def review_server(self, port: int = 0) -> ReviewServer:
        """A pair-review web server for the last run's sample, on 127.0.0.1 with a token.

        Use ``.url`` (token included) and ``.serve_forever()``; ``.close()`` stops it.
        """
        return ReviewServer(self.settings.run_dir(self.name), self.name, port=port)

    # --- pages ------------------------------------------------------------------------------
    def pages(self, run_id: str | None = None) -> dict:
        """Rewrite the alias's history page and a run's report page (the latest by default); their paths."""
        return report_pages.refresh(self.settings, self.name, run_id)


# --- beyond one alias -----------------------------------------------------------------------
def check(settings: Settings | None = None, alias: str | None = None) -> dict[str, tuple[bool, str, int]]:
    """Readiness checks (settings, Qdrant, alias, model store, work dir, teacher).

    Returns:
        ``{name: (ok, detail, exit code if it failed)}`` in check order.
    """
    settings = settings or load_settings()
    return run_checks(settings, alias or settings.alias)


def import_feedback(path: Path | str, *, alias: str | None = None, settings: Settings | None = None):
    """Import feedback events from a JSONL file (rows without an alias take ``alias``, else ``VECTUNE_ALIAS``)."""
    settings = settings or load_settings()
    with Store.open(settings) as store:
        return feedback_ops.import_jsonl(store, path, alias=alias, default_alias=settings.alias,
                                         collection=settings.labels.collection)


def export_feedback(out, *, alias: str | None = None, settings: Settings | None = None) -> int:
    """Write feedback events (of one alias, or all) as JSONL to a path or an open file."""
    settings = settings or load_settings()
    with Store.open(settings) as store:
        return feedback_ops.export(store, out, alias, collection=settings.labels.collection)


__all__ = ["Alias", "check", "export_feedback", "import_feedback"]
