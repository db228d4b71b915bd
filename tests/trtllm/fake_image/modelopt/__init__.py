"""nvidia-modelopt as the TensorRT-LLM image pins it (~0.37, requirements.txt), or with FAKE_IMAGE
unset the names build_engines needs from a newer one."""
from _fail import FAIL

__version__ = "0.37.0" if "modelopt-0.37" in FAIL else "0.47.0"
