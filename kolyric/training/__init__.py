"""Fine-tuning: corpora, dataset, the Lightning module, the runner, and from-scratch setup."""
