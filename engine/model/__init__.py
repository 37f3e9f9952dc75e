"""The model: loading, one teacher-forced forward, the per-position reduction, HF's reference."""
