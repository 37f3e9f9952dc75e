"""`import_models_package` serves transformers.models' index of its model files from the package init's pass,
and the lazy module it builds is the one a fresh index gives (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
sys.modules["torch"] = None  # a tokenizer-only transformers: the same index, a faster test
import transformers.utils.import_utils as import_utils
del sys.modules["torch"]
from tokstep.engine.model.models_index import import_models_package

indexer = import_utils.create_import_structure_from_path
hits = indexer.cache_info().hits
import_models_package()
served = indexer.cache_info().hits - hits
assert import_utils.create_import_structure_from_path is indexer  # put back afterwards

imported = sys.modules["transformers.models"]
folder = imported.__path__[0]
fresh = import_utils.spread_import_structure(indexer.__wrapped__(folder))  # read from disk again
rebuilt = import_utils._LazyModule("transformers.models", imported.__file__, fresh)

def state(module):
    return {
        "modules": sorted(module._modules),
        "classes": sorted(module._class_to_module.items()),
        "missing": sorted((k, sorted(map(str, v))) for k, v in module._object_missing_backend.items()),
        "all": sorted(module.__all__),
    }

print(json.dumps({"served": served, "same": state(imported) == state(rebuilt),
                  "classes": len(imported._class_to_module)}))
"""


def test_models_package_reuses_the_package_index_and_matches_a_fresh_one() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["served"] >= 1  # the folder was not indexed a second time
    assert outcome["classes"] > 1000  # AutoTokenizer, LlamaConfig, ... all there
    assert outcome["same"]
