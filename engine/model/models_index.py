"""Import `transformers.models` without indexing transformers' model files a second time.

transformers' package init indexes every file under `transformers/models` (about 3,400 files read and parsed for
their `__all__`) to build its lazy top-level namespace; `transformers.models`' own init then indexes the same
folder again under another cache key (the `__init__.py` file rather than the folder). Each pass is 0.2-0.3 s of
every start-up that loads a tokenizer or a model. The second pass asks the (lru-cached) indexer for the folder
the first pass already indexed, so it is served from that cache; the result is the same index (the indexer reads
only the folder, and the index is read-only for both lazy modules).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def import_models_package() -> None:
    """Import `transformers.models` (AutoTokenizer, AutoConfig, AutoModel... live there), reusing the package
    init's index of the model files. Does nothing when it is already imported."""
    if "transformers.models" in sys.modules:
        return
    # lazy: loads transformers (its package init; torch only if the caller allowed it)
    import transformers.utils.import_utils as import_utils

    indexer = getattr(import_utils, "create_import_structure_from_path", None)
    if indexer is None or not hasattr(indexer, "cache_info"):  # another transformers: import it plainly
        import transformers.models  # noqa: F401

        return
    models_dir = Path(import_utils.__file__).resolve().parents[1] / "models"
    package_key = Path(sys.modules["transformers"].__file__ or "").parent / "models"  # the package init's key

    def same_folder_once(module_path: Any) -> Any:
        folder = os.path.dirname(module_path) if os.path.isfile(module_path) else module_path
        same = Path(folder).resolve() == models_dir
        return indexer(package_key if same else module_path)

    import_utils.create_import_structure_from_path = same_folder_once
    try:
        import transformers.models  # noqa: F401
    finally:
        import_utils.create_import_structure_from_path = indexer
