"""The release image's tensorrt_llm: its import loads libnvinfer.so.10 (through the tensorrt bindings),
found only on the LD_LIBRARY_PATH that /etc/shinit_v2 sets (docker/common/install_tensorrt.sh)."""
from _fail import FAIL

if "libnvinfer" in FAIL:
    raise ImportError("libnvinfer.so.10: cannot open shared object file: No such file or directory")

__version__ = "1.3.0rc13"
