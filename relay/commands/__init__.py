"""The `relay` command line: its sub-commands and the local demo."""
