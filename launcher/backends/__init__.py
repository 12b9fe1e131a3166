"""Where a run's processes start: one module per way of reaching hosts."""
