"""Error taxonomy: decides between dead-lettering at once, retrying, and gRPC status codes."""


class StudiolineError(Exception):
    """Base of the project's errors. `code` is a short machine-readable reason."""

    code = "error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class PermanentError(StudiolineError):
    """The same input will fail the same way: dead-letter it, never retry (gRPC INVALID_ARGUMENT)."""

    code = "invalid_input"


class ImageRejected(PermanentError):
    """An input image is not acceptable: not an image, truncated, too large, unsupported."""


class InvalidEvent(PermanentError):
    """A Kafka message that is not a job event Studioline understands."""

    code = "invalid_event"


class InvalidParams(PermanentError):
    """Step parameters that do not validate."""

    code = "invalid_params"


class MissingInput(PermanentError):
    """A step needs an artifact (e.g. a mask) that the job does not carry."""

    code = "missing_input"


class TransientError(StudiolineError):
    """Worth retrying with backoff: storage or broker hiccups."""

    code = "transient"


class ConfigError(StudiolineError):
    """Configuration or routing table that does not validate at start-up."""

    code = "config"


class ModelMissing(StudiolineError):
    """A model file is not in the model store; the message names the command that installs it."""

    code = "model_missing"
