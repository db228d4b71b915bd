"""export_hf_checkpoint: 0.37's signature has no max_shard_size (it came in 0.44)."""
import tempfile

from _fail import FAIL

if "modelopt-0.37" in FAIL:
    def export_hf_checkpoint(model, dtype=None, export_dir=tempfile.gettempdir(), save_modelopt_state=False):
        raise SystemExit("the fake image does not export")
else:
    def export_hf_checkpoint(model, dtype=None, export_dir=tempfile.gettempdir(), save_modelopt_state=False,
                             components=None, extra_state_dict=None, max_shard_size="10GB", **kwargs):
        raise SystemExit("the fake image does not export")
