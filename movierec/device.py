"""Run-time device selection: the GPU when this build and machine have one, else the CPU.

Both libraries are asked separately, since a machine may have the GPU build of one and
the CPU build of the other. Every command reports what it used.
"""

from __future__ import annotations


def paddle_device() -> str:
    """'gpu:0' when Paddle is a CUDA build and sees a GPU, else 'cpu'."""
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return "gpu:0"
    return "cpu"


def use_paddle_device() -> str:
    """Select the device for Paddle and return its name."""
    import paddle

    device = paddle_device()
    paddle.set_device(device)
    return device


def faiss_gpu_count() -> int:
    """GPUs FAISS can use (0 for faiss-cpu builds, which lack the call's GPU half)."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0
