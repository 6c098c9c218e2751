"""The `tinysep` command (``main``) and one module per subcommand (arguments and printing)."""
