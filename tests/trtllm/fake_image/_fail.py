import os

FAIL = set(filter(None, os.environ.get("FAKE_IMAGE", "").split(",")))
