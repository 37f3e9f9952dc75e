"""What to compare the main model with (the CLI's --compare* flags). No torch: the CLI builds it at once."""

from __future__ import annotations

from dataclasses import dataclass

from tokstep.engine.model.loading import ModelSpec


@dataclass(frozen=True)
class CompareSpec:
    """Model B (same sample, per position KL) and/or a second tokenizer (tokenization only)."""

    model: ModelSpec | None = None  # B; None with a tokenizer only
    tokenizer: str | None = None  # --compare-tokenizer PATH: boundaries only, no second model

    @property
    def description(self) -> str:
        if self.model is None:
            return f"tokenizer {self.tokenizer}"
        return f"{self.model.display_name} ({self.model.dtype}, {self.model.device})"
