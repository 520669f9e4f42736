"""Error taxonomy: decides between dead-lettering at once, retrying, and gRPC status codes."""

# A reason travels in a dead letter (bounded by kafka.max_message_bytes) and in gRPC status
# details (bounded by the peer's metadata limit, 8 KiB by default): never longer than this.
MESSAGE_MAX_CHARS = 1024


def bounded(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """`text` cut to at most `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit - 48, 0)  # room for the note below
    return f"{text[:keep]}... [{len(text) - keep} more characters cut]"


class StudiolineError(Exception):
    """Base of the project's errors. `code` is a short machine-readable reason; the message is
    bounded (`bounded`), since it may quote an arbitrarily large input."""

    code = "error"
    max_chars: int | None = MESSAGE_MAX_CHARS

    def __init__(self, message: str, code: str | None = None):
        super().__init__(bounded(message, self.max_chars) if self.max_chars else message)
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


class Forbidden(PermanentError):
    """A tenant asked for something outside what it may read or write (gRPC PERMISSION_DENIED).
    Its message never tells whether the object exists."""

    code = "forbidden"


class Unauthenticated(StudiolineError):
    """A call without a valid token (gRPC UNAUTHENTICATED)."""

    code = "unauthenticated"


class TransientError(StudiolineError):
    """Worth retrying with backoff: storage or broker hiccups."""

    code = "transient"


class ConfigError(StudiolineError):
    """Configuration or routing table that does not validate at start-up."""

    code = "config"
    max_chars = None  # read by an operator at start-up, it travels nowhere: every bad field counts


class ModelMissing(StudiolineError):
    """A model file is not in the model store; the message names the command that installs it."""

    code = "model_missing"


def as_permanent(exc: BaseException, what: str, code: str) -> PermanentError:
    """An exception that is not one of ours, as a PermanentError naming what failed and how: a
    bug met by one input (in a parser, a validator, a step) dead-letters that input; it must not
    crash-loop the worker."""
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}", code)
