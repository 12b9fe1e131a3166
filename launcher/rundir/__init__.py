"""The run directory: its layout, the run record, and reading runs back."""
