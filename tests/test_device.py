import sys
import types

import paddle

from movierec import device


def test_paddle_uses_gpu_only_when_cuda_build_sees_a_device(monkeypatch):
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: False)
    assert device.paddle_device() == "cpu"
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 0)
    assert device.paddle_device() == "cpu"
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 2)
    assert device.paddle_device() == "gpu:0"


def test_faiss_gpu_count(monkeypatch):
    fake = types.SimpleNamespace(get_num_gpus=lambda: 3)
    monkeypatch.setitem(sys.modules, "faiss", fake)
    assert device.faiss_gpu_count() == 3
    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace())  # a build without GPU support
    assert device.faiss_gpu_count() == 0


def test_this_machine_reports_a_real_device():
    assert device.use_paddle_device() in ("cpu", "gpu:0")
