"""Errors the CLI turns into one clear line and an exit code, with no traceback."""


class UserError(Exception):
    """Bad input from the user (env id, device, checkpoint, flags): exit code 2."""

    exit_code = 2


class TrainingDiverged(Exception):
    """A loss became NaN or infinite: training stopped, the last good checkpoint kept. Exit 3."""

    exit_code = 3
