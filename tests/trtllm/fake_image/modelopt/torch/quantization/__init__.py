"""mtq config names: in 0.37 quant_cfg is a dict of patterns and there is no
utils.update_quant_cfg_with_kv_cache_quant; the Mamba-MoE presets are newer."""
from types import SimpleNamespace

from _fail import FAIL

NVFP4_DEFAULT_CFG = {"quant_cfg": {"*weight_quantizer": {"num_bits": (2, 1)}, "default": {"enable": False}},
                     "algorithm": "max"}
FP8_DEFAULT_CFG = {"quant_cfg": {"*weight_quantizer": {"num_bits": (4, 3)}, "default": {"enable": False}},
                   "algorithm": "max"}
FP8_KV_CFG = {"quant_cfg": {"*[kv]_bmm_quantizer": {"num_bits": (4, 3), "enable": True}}}
utils = SimpleNamespace()
if "modelopt-0.37" not in FAIL:
    MAMBA_MOE_NVFP4_CONSERVATIVE_CFG = NVFP4_DEFAULT_CFG
    MAMBA_MOE_FP8_CONSERVATIVE_CFG = FP8_DEFAULT_CFG
