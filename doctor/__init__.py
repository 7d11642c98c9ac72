"""Diagnostics: the checks and the `doctor` command line.
May import config and every package it diagnoses; never main or web_server."""
