"""The `tierwise` command: one entry point over the command groups of `training` and `serving`."""
