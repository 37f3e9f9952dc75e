"""`tokstep scan`: batched, resumable, sharded over ranks; its files and the view over them."""
