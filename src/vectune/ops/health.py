"""``vectune check``: fast readiness checks for containers and cron.

Loads no model and takes no lock. Against embedded Qdrant the storage folder is
only inspected, not opened, when a running cycle holds it.

**Models**: with an alias, the live collection's and the rollback target's models are verified
against the SHA-256 of every file their manifest records (:mod:`vectune.ops.integrity`); without
one (or while a cycle holds embedded Qdrant), every model in the store is. A damaged model fails
the check with exit code 3 naming the file.
"""

from __future__ import annotations

import logging
import os
import tempfile

from vectune.config.settings import Settings
from vectune.errors import BadInput, LockHeld, VectuneError
from vectune.models.store import ModelStore
from vectune.ops.integrity import model_refs
from vectune.qdrant.store import Store

logger = logging.getLogger(__name__)


def run_checks(settings: Settings, alias: str | None = None) -> dict[str, tuple[bool, str, int]]:
    """Run every check.

    Args:
        settings: the settings to check.
        alias: also check that this alias resolves.

    Returns:
        ``{name: (ok, detail, exit_code_if_failed)}`` in check order.
    """
    out: dict[str, tuple[bool, str, int]] = {"settings": (True, "", 2)}
    if settings.qdrant.url:
        try:
            from qdrant_client import QdrantClient

            key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
            client = QdrantClient(url=settings.qdrant.url, api_key=key, timeout=min(10, settings.qdrant.timeout_s))
            aliases = {a.alias_name for a in client.get_aliases().aliases}
            out["qdrant"] = (True, settings.qdrant.url, 4)
            if alias:
                out["alias"] = (alias in aliases, alias if alias in aliases else f"'{alias}' does not exist", 3)
            client.close()
        except Exception as e:  # noqa: BLE001
            why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            out["qdrant"] = (False, f"cannot reach {settings.qdrant.url}: {why}", 4)
    else:
        path = settings.qdrant_path
        ok = path.exists() or _writable(path.parent)
        out["qdrant"] = (ok, f"embedded at {path}", 4)
    for name, path in (("model_store", settings.model_dir), ("work_dir", settings.work_dir)):
        out[name] = (_writable(path), str(path), 3)
    if out["qdrant"][0] and out.get("alias", (True,))[0]:
        out["models"] = _check_models(settings, alias)
    if settings.teacher.kind == "openai":
        out["teacher"] = _check_teacher(settings)
    return out


def _check_models(settings: Settings, alias: str | None) -> tuple[bool, str, int]:
    """The alias's live and rollback target's models (else every stored model) against their manifests."""
    models = ModelStore.from_settings(settings)
    refs: list[tuple[str, str]] = []
    if alias and (settings.qdrant.url or settings.qdrant_path.exists()):
        try:
            with Store.open(settings) as store:
                refs = model_refs(store, alias)
        except (LockHeld, BadInput):  # a cycle holds embedded Qdrant, or no such alias yet: every stored model
            refs = []
        except VectuneError as e:
            return False, f"cannot read the lineage of '{alias}': {e}", e.exit_code
    if not refs:
        root = models.root
        refs = [(p.name, "stored model") for p in sorted(root.iterdir()) if models.stored(p.name)] if root.is_dir() \
            else []
    problems, checked = [], 0
    for ref, role in refs:
        v = models.verify(ref)
        checked += v.checked
        problems += [f"{role} {ref!r}: {p}" for p in v.problems]
    if problems:
        return False, "DAMAGED: " + "; ".join(problems) + " (restore the model folder from a backup)", 3
    return True, f"{len(refs)} model(s) intact ({checked} files checked against their manifests)", 3


def _writable(path) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _check_teacher(settings: Settings) -> tuple[bool, str, int]:
    t = settings.teacher
    try:
        import openai

        client = openai.OpenAI(base_url=t.base_url, api_key=(t.api_key.get_secret_value() if t.api_key else "none"),
                               timeout=10, max_retries=0)
        client.models.list()
        return True, t.base_url or "api.openai.com", 4
    except Exception as e:  # noqa: BLE001
        return False, f"teacher endpoint unreachable: {type(e).__name__}", 4
