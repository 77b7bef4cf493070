"""Pure analysis of stored runs: metrics, studies, recommendation, baselines, gate statistics, KV fit."""
