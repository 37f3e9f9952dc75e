"""What is traced: a sample, how the command line specifies one, rows of data files."""
