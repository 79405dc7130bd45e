"""The fleet's output folder: one export folder per user, identical files stored once, a record per user.

    OUT/users/<user>/      exactly what `edgeasr export --out` writes for that user (open it, bench it, ship it)
    OUT/store/ab/<sha256>  every large file once, by content; users' files are hard links to these
    OUT/records/<user>.json status, what was asked (the job key), the folder's content hash, plan and artifact ids
    OUT/.work/             exports in progress (an interrupted one is removed by the next run)
    OUT/fleet.json, fleet.md  the summary

A user's folder appears by one rename once its export finished and its files were linked into the store, and
the record is written after that: a run that stops anywhere leaves either a complete, recorded user or one that
the next run redoes. Users whose plans decide the same weights get byte-identical artifacts (the artifact
carries only the plan's decisions: `QuantPlan.artifact_plan`), which are then stored once, so the store grows
with distinct plans, not with users. Stored files are read-only: a change through one user's folder would
change every user sharing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from exporter.io import write_json
from runtimes.contract import PLAN_FILE, SUMMARY_FILE
from runtimes.errors import EdgeAsrError
from runtimes.integrity import sha256_file

RECORD_VERSION = 1
# Smaller files (plan.json, export.json, report.md, ...) are per user or too small to be worth a link.
MIN_SHARED_BYTES = 64 * 1024


class FleetStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = None  # the open lock file, once open() holds it

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def blobs(self) -> Path:
        return self.root / "store"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def work(self) -> Path:
        return self.root / ".work"

    def open(self) -> FleetStore:
        """Create the folders and hold the fleet's lock for this process's life; refuse a non-empty folder
        that is not a fleet's, and one another run is using. Exports an interrupted run left half-done
        (in .work/) are removed: no run is using them."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise EdgeAsrError(f"fleet output {root} is a file; give a folder")
        if root.is_dir() and any(root.iterdir()) and not self.records.is_dir():
            raise EdgeAsrError(f"{root} is not empty and holds no fleet (no records/ folder); give a new folder")
        try:
            for folder in (self.users, self.blobs, self.records, self.work):
                folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(root / ".lock", "w")  # noqa: SIM115 - held until the process ends
        except OSError as exc:
            raise EdgeAsrError(f"cannot create the fleet's folders in {root}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise EdgeAsrError(f"another edgeasr fleet run is using {root}; wait for it or give another --out") from exc
        for leftover in self.work.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        return self

    def user_folder(self, user: str) -> Path:
        return self.users / user

    def staging(self, user: str) -> Path:
        """Where `user`'s export is written (absent: an interrupted earlier attempt is removed)."""
        path = self.work / user
        if path.exists():
            shutil.rmtree(path)
        return path

    def record(self, user: str) -> dict | None:
        path = self.records / f"{user}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and data.get("record_version") == RECORD_VERSION else None

    def write_record(self, user: str, record: dict) -> None:
        write_json(self.records / f"{user}.json", {"record_version": RECORD_VERSION, **record})

    def completed(self, user: str, key: str) -> dict | None:
        """The record of `user` when their export is done for this very job and their folder is whole and
        unchanged (its content hash, over every file and so every checksums.json too, is the recorded one);
        else None (redo them)."""
        record = self.record(user)
        if not record or record.get("status") != "ok" or record.get("key") != key:
            return None
        folder = self.user_folder(user)
        try:
            if not folder.is_dir() or content_hash(folder) != record.get("content_hash"):
                return None
        except OSError:
            return None
        return record

    def publish(self, user: str, staged: Path) -> dict:
        """Link `staged`'s large files into the store, move it into place as `user`'s folder; returns what the
        record needs (content hash, artifacts with their plan and artifact ids)."""
        digests = file_digests(staged)  # each file read once: for the store, the artifact ids and the hash
        for name, digest in digests.items():
            if (staged / name).stat().st_size >= MIN_SHARED_BYTES:
                self._share(staged / name, digest)
        summary = json.loads((staged / SUMMARY_FILE).read_text(encoding="utf-8"))
        artifacts = [_artifact_entry(staged, entry, digests) for entry in summary.get("artifacts", [])]
        digest = _combined(digests)
        final = self.user_folder(user)
        if final.exists():  # a redo: the old folder goes only now that the new one is complete
            retired = self.work / f"{user}.old"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(staged, final)
        return {"content_hash": digest, "artifacts": artifacts}

    def _share(self, path: Path, digest: str) -> None:
        blob = self.blobs / digest[:2] / digest
        blob.parent.mkdir(exist_ok=True)
        try:
            os.link(path, blob)  # the first copy of this content becomes the stored one
            blob.chmod(0o444)
            return
        except FileExistsError:
            pass
        except OSError as exc:
            raise EdgeAsrError(
                f"cannot hard-link {path} into {self.blobs}: {exc.strerror or exc}; the fleet's output folder "
                "must be on one file system that supports hard links"
            ) from exc
        if blob.stat().st_size != path.stat().st_size:
            raise EdgeAsrError(f"stored file {blob} does not hold what its name says; remove it and run again")
        link = path.with_name(f".{path.name}.link")
        os.link(blob, link)
        os.replace(link, path)

    def stored_bytes(self) -> tuple[int, int]:
        """(bytes on disk, once per file however many users link it; bytes the users' folders would take as
        separate copies)."""
        seen: set[tuple[int, int]] = set()
        on_disk = logical = 0
        for path in self.users.rglob("*"):
            if not path.is_file():
                continue
            stat = path.stat()
            logical += stat.st_size
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                on_disk += stat.st_size
        return on_disk, logical


def file_digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder`, in path order."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    }


def content_hash(folder: Path) -> str:
    """sha256 over every file's relative path and sha256: the folder's content, whatever its links."""
    return _combined(file_digests(folder))


def _combined(digests: dict[str, str]) -> str:
    combined = hashlib.sha256()
    for name, digest in digests.items():
        combined.update(f"{name}\0{digest}\n".encode())
    return combined.hexdigest()


def _artifact_entry(folder: Path, entry: dict, digests: dict[str, str]) -> dict:
    """One artifact of an export: its format, folder, bytes, the id of the plan it carries and the id of its
    files (equal artifact ids: the same bytes, stored once). `digests`: file_digests(folder)."""
    where = folder / entry["folder"]
    digest = hashlib.sha256()
    for name in sorted(entry["files"]):
        digest.update(f"{name}\0{digests[(where / name).relative_to(folder).as_posix()]}\n".encode())
    plan = json.loads((where / PLAN_FILE).read_text(encoding="utf-8"))
    return {
        "format": entry["format"],
        "folder": entry["folder"],
        "artifact_bytes": entry["artifact_bytes"],
        "plan_id": plan_id_of(plan),
        "artifact_id": digest.hexdigest()[:16],
    }


def plan_id_of(plan: dict) -> str:
    from exporter.quant.plan import QuantPlan

    return QuantPlan.from_dict(plan).plan_id
