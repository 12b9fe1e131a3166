"""The node agent (one per host, stdlib only) and the launcher's handle on it."""
