"""tokstep's engine: load a causal LM, build a Sample, and trace its teacher-forced loss. No UI here."""

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason, Sample

__all__ = ["IGNORE_INDEX", "MaskReason", "Sample", "TokstepError"]
