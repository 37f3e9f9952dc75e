"""Trainer batches: the file, packing, per-document and batch loss, labels against structure."""
