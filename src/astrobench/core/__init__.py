"""What several tasks share: I/O, training, metrics, plots, reports, network blocks."""
