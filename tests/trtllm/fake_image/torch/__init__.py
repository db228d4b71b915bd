"""torch, as far as trtllm/check.py and the fake serve.py use it (torch.cuda)."""
from torch import cuda  # noqa: F401
