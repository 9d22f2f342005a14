"""Faust agents: thin functions that parse, call plain functions in pipeline/, hand results on."""
