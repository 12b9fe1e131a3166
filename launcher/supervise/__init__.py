"""Supervising one attempt: the monitor loop and the policies it applies."""
