"""torch.cuda as the checker uses it: a GB10 (SM 12.1) unless FAKE_IMAGE says no-gpu or hopper."""
from _fail import FAIL


def _capability(index=0):
    return (9, 0) if "hopper" in FAIL else (12, 1)


def is_available():
    return "no-gpu" not in FAIL


def device_count():
    return 0 if "no-gpu" in FAIL else 1


def get_device_capability(index=0):
    return _capability(index)


def get_device_name(index=0):
    return "NVIDIA H100" if "hopper" in FAIL else "NVIDIA GB10"
