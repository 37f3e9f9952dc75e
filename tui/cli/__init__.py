"""The command line: its flags, the run configuration, the Rich commands and reports."""
