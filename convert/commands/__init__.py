"""`tinysep` subcommands of the convert layer: export, quantize, prune, sweep."""
