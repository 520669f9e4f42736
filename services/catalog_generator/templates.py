"""Model templates for try-on: a model photo prepared once (pose, person mask, garment region)
and kept in the templates bucket as <id>/photo.jpg, <id>/person.png, <id>/region.png and
<id>/template.json (landmarks, size, the pose's score)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from studioline.services.catalog_generator import tryon
from studioline.shared.errors import PermanentError

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


def prepare(photo: np.ndarray, pose_model) -> Template:
    """Runs the pose model on a model photo and derives its person mask and garment region."""
    pose = pose_model.estimate(photo)
    if pose is None:
        raise PermanentError("template: no person found in the model photo")
    body = tryon.Body.from_landmarks(pose.landmarks)
    region = tryon.garment_region(photo, pose.person_mask, body)
    return Template(photo, pose.person_mask, region, pose.landmarks, pose.score)


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


def save(storage, bucket: str, template_id: str, template: Template) -> None:
    check_id(template_id)
    for name, (data, content_type) in encode(template).items():
        storage.put(bucket, f"{template_id}/{name}", data, content_type)


def load(storage, bucket: str, template_id: str) -> Template:
    check_id(template_id)
    if not storage.exists(bucket, f"{template_id}/template.json"):
        raise PermanentError(f"template {template_id!r} is not in bucket {bucket!r}; add it with `studioline templates add`")
    return decode({name: storage.get(bucket, f"{template_id}/{name}") for name in FILES})


def list_ids(storage, bucket: str) -> list[str]:
    """Ids of the templates in the bucket (storage.client is the minio client)."""
    if not storage.client.bucket_exists(bucket):
        return []
    objects = storage.client.list_objects(bucket, recursive=True)
    return sorted(o.object_name.split("/", 1)[0] for o in objects if o.object_name.endswith("/template.json"))


def templates_command(args) -> int:
    """`studioline templates add PHOTO [--id ID]` and `studioline templates list`."""
    import sys

    from studioline.shared.config import get_settings
    from studioline.shared.models.pose import BlazePose
    from studioline.shared.models.store import ModelStore
    from studioline.shared.storage import Storage

    settings = get_settings()
    storage = Storage(settings.s3)
    bucket = settings.s3.templates_bucket
    if args.templates_command == "list":
        for template_id in list_ids(storage, bucket):
            print(template_id)
        return 0
    template_id = check_id(args.template_id or args.photo.stem)
    from studioline.shared.imageio import decode_image

    try:
        photo = decode_image(args.photo.read_bytes(), settings.limits).pixels[..., :3]
        model = BlazePose(ModelStore(settings.models.dir, storage, settings.s3.models_bucket), threads=settings.models.intra_op_threads)
        template = prepare(np.ascontiguousarray(photo), model)
    except (OSError, PermanentError) as exc:
        print(f"studioline templates add: {args.photo}: {exc}", file=sys.stderr)
        return 1
    storage.ensure_buckets(bucket)
    save(storage, bucket, template_id, template)
    print(json.dumps({"id": template_id, "bucket": bucket, "width": template.photo.shape[1],
                      "height": template.photo.shape[0], "region_px": int(template.region.sum())}))
    return 0
