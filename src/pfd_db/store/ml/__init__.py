"""Machine learning: datasets, experiments, curves, campaigns, jobs, explanations, tags, search."""
