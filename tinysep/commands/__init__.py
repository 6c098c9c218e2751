"""One module per `tinysep` subcommand (argument parsing and printing only)."""
