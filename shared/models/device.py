"""Tensor work on the model's device, so the GPU is not starved by the CPU around it.

Where an onnxruntime session runs on CUDA and torch sees the GPU, pre-processing (resize,
scale, normalise), the model (through onnxruntime's I/O binding on torch's memory) and
post-processing (min-max, resize back) stay on the device; only the final masks come back.
JPEGs can be decoded on the GPU with torchvision.io.decode_jpeg where torchvision loads (PyPI's
torchvision does not load beside the CPU torch of the development machine: it is guarded, and
OpenCV decodes instead). Everything here also runs with torch on the CPU, which is how the
tests check it gives the NumPy/OpenCV path's results within a stated tolerance.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def torch_device_for(session) -> str | None:
    """"cuda" when the session runs on the GPU and torch can use it there, else None."""
    if session.get_providers()[0] not in GPU_PROVIDERS:
        return None
    try:
        import torch
    except ImportError:
        log.warning("torch is not installed: pre- and post-processing run on the CPU")
        return None
    return "cuda" if torch.cuda.is_available() else None


def u2net_predict(model, images: list[np.ndarray], device: str) -> list[np.ndarray]:
    """U2Net(p) over a batch with the tensors on `device`, by the transform of
    shared/models/u2net.py; its resizes here: antialiased bilinear to the model's square (close
    to OpenCV's area filter) and bilinear back."""
    import torch
    import torch.nn.functional as F

    from studioline.shared.models.u2net import MEAN, STD, normalise, stretch

    size = model.size
    mean = torch.from_numpy(MEAN).to(device)
    std = torch.from_numpy(STD).to(device)
    with torch.inference_mode():
        small = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or str(image.dtype) not in ("uint8", "torch.uint8"):
                raise ValueError(f"{model.name} takes HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
            pixels = image if isinstance(image, torch.Tensor) else torch.from_numpy(image)  # decode_jpegs on the GPU
            t = pixels.to(device, non_blocking=True).permute(2, 0, 1)[None].float()
            small.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        x = torch.cat(small)
        x = normalise(x, x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1.0), mean, std).contiguous()
        if model.stack_batches or len(images) == 1:
            d1 = run_session(model.session, model.input_name, x)[:, 0]
        else:
            d1 = torch.cat([run_session(model.session, model.input_name, x[i:i + 1])[:, 0] for i in range(len(x))])
        pred = stretch(d1, d1.amin(dim=(1, 2), keepdim=True), d1.amax(dim=(1, 2), keepdim=True))
        out = []
        for p, image in zip(pred, images):
            full = F.interpolate(p[None, None], size=image.shape[:2], mode="bilinear", align_corners=False)
            out.append(full[0, 0].clamp_(0.0, 1.0).cpu().numpy())
    return out


def run_session(session, input_name: str, x):
    """The session's first output for the torch tensor x, kept on x's device (I/O binding
    into torch's own memory on CUDA; on the CPU a plain run)."""
    import torch

    if x.device.type != "cuda":
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])
    output = session.get_outputs()[0]
    shape = [x.shape[0]] + [int(d) for d in output.shape[1:]]  # the batch axis is the symbolic one
    result = torch.empty(shape, dtype=torch.float32, device=x.device)
    binding = session.io_binding()
    index = x.device.index or 0
    binding.bind_input(input_name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
    binding.bind_output(output.name, "cuda", index, np.float32, tuple(shape), result.data_ptr())
    session.run_with_iobinding(binding)
    return result


def decode_jpegs(datas: list[bytes], device: str) -> list:
    """JPEG bytes -> RGB images: on the GPU with torchvision (tensors HxWx3 uint8 on the device)
    where it loads and device is "cuda", else OpenCV on the CPU (NumPy arrays)."""
    if device == "cuda":
        try:
            import torch
            from torchvision.io import ImageReadMode, decode_jpeg
        except Exception as exc:  # PyPI torchvision does not load beside a CPU-only local torch
            log.warning("GPU JPEG decoding unavailable (%s): decoding with OpenCV", exc)
        else:
            tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
            return [t.permute(1, 2, 0) for t in decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda")]
    import cv2

    out = []
    for data in datas:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("not a decodable image")
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out
