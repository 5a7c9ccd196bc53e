"""Built-in degradations, one file each; importing this package registers them."""

from degradations import blur, inpaint, jpeg, multi, noise, sr  # noqa: F401
