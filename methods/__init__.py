"""Built-in restoration methods, one file each; importing this package registers them."""

from methods import identity, tv  # noqa: F401
