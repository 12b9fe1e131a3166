"""A launch from its config to its last attempt: inputs checked, resources held, attempts run."""
