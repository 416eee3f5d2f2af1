"""The school's hacks, one sub-package per task (same shape for all: simulate, data, models, task)."""
