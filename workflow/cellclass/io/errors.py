"""The one exception type for bad user input (images, sheets, config)."""


class InputError(ValueError):
    """Bad input from the user. The message names the file or key and the problem."""
