"""What a run leaves behind besides its records: summary files and gate tables."""
