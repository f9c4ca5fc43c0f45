"""Screens of the terminal app: registry, run wizard, live run, runs history, help, small dialogs."""
