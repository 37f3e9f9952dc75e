"""Compare two models or two tokenizers (KL, ΔCE, bits per byte), and the logit lens."""
