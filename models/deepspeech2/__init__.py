"""Deep Speech 2 / Deep Speech 1 speech recognition: model, decoding, runtime."""
from models.deepspeech2.model import DeepSpeech2, DeepSpeech2Config

__all__ = ["DeepSpeech2", "DeepSpeech2Config", "make_runtime"]


def make_runtime(bundle):
    """Registry factory: a loaded bundle -> DeepSpeech2Transcriber."""
    from models.deepspeech2.runtime import DeepSpeech2Transcriber

    return DeepSpeech2Transcriber.from_bundle(bundle)


def model_spec():
    """The registry entry (models/registry.py)."""
    from models.registry import ModelSpec

    return ModelSpec("deepspeech2", DeepSpeech2Config, DeepSpeech2, "asr", make_runtime)
