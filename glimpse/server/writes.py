"""The write routes (token only): add, upload, remove, delete, and the jobs that run them on the writer thread."""

from __future__ import annotations

import hmac
import io
import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, HTTPException, Request, Response, UploadFile
from fastapi import Path as FastPath
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image

from ..collection import Collection
from ..ingest import content_hash
from ..ingest.names import shown
from ..settings import check_scan_globs
from .config import PathNotAllowedError, confine
from .jobs import JobState
from .models import MAX_INT, AddPaths, Digits, Job, RemovePaths
from .service import ERRORS, PENDING, PathId, Service, checked_uploads, only_form_fields


# Pillow's format names -> the file extension an uploaded image is kept under.
_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
           "TIFF": ".tif", "HEIF": ".heic", "AVIF": ".avif"}


#: A write's answers: 202 queued, or 200 done when the request asked to wait.
DONE = {**ERRORS, 200: {"model": Job, "description": "Done (?wait=true): the job as it ended."}}


def write_routes(app: FastAPI, service: Service) -> None:
    col = service.col
    Writes = [Depends(require_write_token)]
    if service.config.write_token is not None and col.has_files:
        resume_uploads(service)

    @app.delete("/api/items/{item_id}", response_model=Job, status_code=202, dependencies=Writes,
                responses=DONE, tags=["write"])
    def delete_item(item_id: PathId, response: Response, wait: bool = False) -> Job:
        """Forget every file of this image (the files themselves are not touched)."""
        paths = service.item(item_id).paths
        return _job(service, "remove", _removal(service, paths), wait, response)

    @app.post("/api/items/upload", response_model=Job, status_code=202,
              dependencies=[*Writes, only_form_fields("image", hint="send the files as image; wait goes in the URL (?wait=true)")],
              responses=DONE, tags=["write"])
    def upload(image: Annotated[list[UploadFile], File(description="Images to add.")], response: Response,
               wait: bool = False) -> Job:
        """Add uploaded images: kept in the server's upload folder (named by content) and indexed."""
        _require_images(col)
        # Every file is checked before any is kept: a refused request leaves no upload behind.
        checked = checked_uploads(service, image, target=64)
        files = {service.upload_dir / f"{content_hash(data)}{_SUFFIX.get(Image.open(io.BytesIO(data)).format or '', '.img')}": data
                 for data in checked}
        after = service.keep_uploads(files)
        saved = [str(path) for path in files]
        return _job(service, "add", lambda c, p: _report(c.add(saved, progress=p)), wait, response, after)

    @app.post("/api/items/add", response_model=Job, status_code=202, dependencies=Writes,
              responses=DONE, tags=["write"])
    def add(req: AddPaths, response: Response, wait: bool = False) -> Job:
        """Add files or folders that are on the server, inside its roots."""
        _require_images(col)
        try:  # refused now, not as a job that fails later
            check_scan_globs(req.include, req.exclude)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        paths = _confined(service, req.paths)
        return _job(service, "add", lambda c, p: _report(
            c.add(paths, include=req.include, exclude=req.exclude, progress=p)), wait, response)

    @app.post("/api/items/remove", response_model=Job, status_code=202, dependencies=Writes,
              responses=DONE, tags=["write"])
    def remove(req: RemovePaths, response: Response, wait: bool = False) -> Job:
        """Forget files or whole folders (inside the server's roots), or keys of precomputed vectors."""
        paths = _confined(service, req.paths, must_exist=False) if col.has_files else req.paths
        return _job(service, "remove", _removal(service, paths), wait, response)

    @app.get("/api/jobs/{job_id}", response_model=Job, responses=ERRORS, tags=["write"])
    def job(job_id: Annotated[int, FastPath(ge=1, le=MAX_INT), Digits]) -> Job:
        state = service.writer.get(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id} (finished jobs are forgotten after a while)")
        return _job_model(state)


def resume_uploads(service: Service) -> None:
    """Finish what a killed server accepted: its uploads were kept, each with a pending marker,
    before their add job ran, and the job died with it. Half-written ones go; those still marked
    are added. An upload without a marker was added (and maybe removed since): it is left alone."""
    folder = service.upload_dir
    if not folder.is_dir() or folder.is_symlink():
        return
    kept = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):  # write_atomic's, killed mid-write
            path.unlink(missing_ok=True)
        elif name.startswith(".") and name.endswith(PENDING):
            upload = folder / name[1 : -len(PENDING)]
            if upload.is_file() and not upload.is_symlink():
                kept.append(upload)
            else:  # killed before the upload itself was written
                path.unlink(missing_ok=True)
    if kept:
        paths = [str(path) for path in kept]
        service.writer.submit("add", lambda c, p: _report(c.add(paths, progress=p)), service.resumed_uploads(kept))


_bearer = HTTPBearer(auto_error=False, description="The server's write token.")


def require_write_token(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token = request.app.state.service.config.write_token
    if token is None:  # 401 like a wrong token (the rule); the message says why
        raise HTTPException(401, "this server is read-only: start it with GLIMPSE_WRITE_TOKEN or --token-file to allow writes",
                            headers={"WWW-Authenticate": "Bearer"})
    if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
        raise HTTPException(401, "writes need the write token: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})


def _require_images(col: Collection) -> None:
    """Refused now, not as a job that fails later (with the upload kept)."""
    if not col.has_files:
        raise HTTPException(422, "this collection holds precomputed vectors and takes no images: "
                                 "add vectors with glimpse import-vectors")


def _confined(service: Service, raw: list[str], must_exist: bool = True) -> list[str]:
    out = []
    for p in raw:
        try:
            real = confine(p, service.roots())
        except PathNotAllowedError as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if must_exist and not real.exists():
            raise HTTPException(404, f"no such file or folder: {shown(str(real))}")
        out.append(str(real))
    return out


def _job(service: Service, kind: str, work, wait: bool, response: Response, after=None) -> Job:
    """Queue a write; with ``wait``, answer when it is done (200) or failed (409 locked, 503 the
    collection damaged or gone, else 422)."""
    state = service.writer.submit(kind, work, after)
    if wait:
        state.future.result()
        if state.locked:
            raise HTTPException(409, state.error)
        if state.unwritable:
            raise HTTPException(503, state.error)
        if state.state == "failed":
            raise HTTPException(422, state.error)
        response.status_code = 200
    return _job_model(state)


def _removal(service: Service, paths: list[str]):
    def work(col: Collection, progress) -> dict:
        removed = col.remove(paths)
        progress(removed, removed)
        # What the server made for the dropped items goes with them: thumbnails, and the
        # files it keeps for uploads (other files are the user's and are never touched).
        service.thumbnails.prune(set(col.item_ids()))
        uploads = service.upload_dir.resolve()
        for path in paths if col.has_files else ():  # keys of precomputed vectors name no file
            if Path(os.path.realpath(path)).parent == uploads:  # realpath: a link loop is no upload, not an error
                Path(path).unlink(missing_ok=True)
        return {"removed": removed}

    return work


def _job_model(state: JobState) -> Job:
    return Job(id=state.id, kind=state.kind, state=state.state, done=state.done, total=state.total,
               result=state.result, error=state.error)


def _report(report) -> dict:
    return {"indexed": report.indexed, "embedded": report.embedded, "linked": report.linked,
            "unchanged": report.unchanged, "skipped": report.skipped, "removed": report.removed,
            # The first 100 reasons; the rest are in /api/errors.
            "errors": [{"path": shown(p), "reason": r} for p, r in report.errors[:100]]}
