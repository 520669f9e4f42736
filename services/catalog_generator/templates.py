"""Model templates for try-on: the Template type (a model photo prepared once: its pose, person
mask and garment region, see prepare.py), its serialisation to and from files, and load / save
through Storage in the templates bucket as <id>/photo.jpg, <id>/person.png, <id>/region.png and
<id>/template.json (landmarks, size, the pose's score). Template ids are checked here.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from studioline.shared.errors import PermanentError

if TYPE_CHECKING:
    from studioline.shared.storage import Storage

TEMPLATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FILES = ("photo.jpg", "person.png", "region.png", "template.json")


@dataclass
class Template:
    photo: np.ndarray  # HxWx3 uint8 RGB
    person: np.ndarray  # HxW float32 in [0, 1]
    region: np.ndarray  # HxW bool: the top the model wears
    landmarks: np.ndarray  # (33, 5)
    score: float = 1.0


def check_id(template_id: str) -> str:
    if not TEMPLATE_ID.match(template_id):
        raise PermanentError(
            f"template id {template_id!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return template_id


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    return buf.getvalue()


def encode(template: Template) -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, content type)."""
    jpg = io.BytesIO()
    Image.fromarray(template.photo).save(jpg, format="JPEG", quality=95)
    h, w = template.photo.shape[:2]
    meta = {"width": w, "height": h, "score": template.score, "landmarks": np.round(template.landmarks, 3).tolist()}
    return {
        "photo.jpg": (jpg.getvalue(), "image/jpeg"),
        "person.png": (_png((template.person * 255 + 0.5).astype(np.uint8)), "image/png"),
        "region.png": (_png(template.region.astype(np.uint8) * 255), "image/png"),
        "template.json": (json.dumps(meta).encode(), "application/json"),
    }


def decode(files: dict[str, bytes]) -> Template:
    def image(name: str, flags: int) -> np.ndarray:
        arr = cv2.imdecode(np.frombuffer(files[name], np.uint8), flags)
        if arr is None:
            raise PermanentError(f"template file {name} is not a readable image")
        return arr

    meta = json.loads(files["template.json"])
    photo = image("photo.jpg", cv2.IMREAD_COLOR)[..., ::-1].copy()
    person = image("person.png", cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    region = image("region.png", cv2.IMREAD_GRAYSCALE) > 127
    return Template(photo, person, region, np.array(meta["landmarks"], np.float32), float(meta.get("score", 1.0)))


def save(storage: Storage, bucket: str, template_id: str, template: Template) -> None:
    check_id(template_id)
    for name, (data, content_type) in encode(template).items():
        storage.put(bucket, f"{template_id}/{name}", data, content_type)


def load(storage: Storage, bucket: str, template_id: str) -> Template:
    check_id(template_id)
    if not storage.exists(bucket, f"{template_id}/template.json"):
        raise PermanentError(f"template {template_id!r} is not in bucket {bucket!r}; add it with `studioline templates add`")
    return decode({name: storage.get(bucket, f"{template_id}/{name}") for name in FILES})


def list_ids(storage: Storage, bucket: str) -> list[str]:
    """Ids of the templates in the bucket."""
    return sorted(key.split("/", 1)[0] for key in storage.list_keys(bucket) if key.endswith("/template.json"))
