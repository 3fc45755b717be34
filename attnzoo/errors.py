"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""


class AttnzooError(Exception):
    """Base class: the message is meant for the user, in one line."""


class UnknownBlockError(AttnzooError):
    """No card has that name."""


class CardError(AttnzooError):
    """A registry card is malformed: the message names the file and the field."""


class ShapeError(AttnzooError):
    """A shape is malformed, or the block cannot take it."""


class ConfigError(AttnzooError):
    """A constructor override, option or suite file is wrong."""


class ProfilerError(Exception):
    """A bug in attnzoo's measurement code, not the user's input nor the block's: the CLI reports it as an
    internal error with its own exit status (70), and --debug shows the traceback. Not an AttnzooError."""


class BlockFailure(Exception):
    """The block itself failed (build, first forward, first training step, compilation): a row's status, not
    the user's error nor attnzoo's. Raised by the profiler's runner, read by the commands that show it."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error
