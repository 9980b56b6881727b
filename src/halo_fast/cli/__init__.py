"""Command line interface: ``python -m halo_fast SUBCOMMAND``."""
