"""What the user sees: renderers, the live dashboard, plan and summary views."""
