"""What a cell sends: prompts and their calibration (`prompts`), prompt and conversation files
(`prompt_files`), multi-turn conversations (`conversations`), trace replay (`trace`), and a cell's
request specs and calibration probes (`specs`)."""
