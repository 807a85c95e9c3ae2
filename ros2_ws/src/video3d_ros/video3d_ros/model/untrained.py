"""An untrained checkpoint for tests, benchmarks and the demo's fallback (no ROS).

Real parts only: a byte-level BPE tokenizer trained on a few scene words with
``tokenizers``, the ``tiny`` shape, random weights, written in our format.
Latency measured with it equals the trained model's (same shape).
"""

from __future__ import annotations

from pathlib import Path


def write_untrained_tiny(directory: Path, trained_frames: int | None = None) -> Path:
    """An untrained `tiny` checkpoint in our format (real tokenizer, random weights);
    ``trained_frames`` is recorded in its config.json as a trained model's would be."""
    from video3d_ros.model.build import build_empty, materialize
    from video3d_ros.model.checkpoint import save_pretrained
    from video3d_ros.model.runtime import detect_runtime
    from video3d_ros.model.shapes import tiny
    from video3d_ros.model.tokenizer import build_tokenizer, token_ids_of

    words = ["chair", "table", "lamp", "bed", "sofa", "red", "blue", "left", "right", "how", "many",
             "what", "is", "the", "of", "on", "there", "are", "colour", "a", "this"]
    corpus = [" ".join(words[(i * k) % len(words)] for k in range(1, 9)) for i in range(300)]
    tokenizer = build_tokenizer(corpus, vocab_size=400)
    config = tiny(len(tokenizer), token_ids_of(tokenizer))
    model = materialize(build_empty(config), detect_runtime("cpu"), seed=0)
    save_pretrained(model, tokenizer, directory, trained_frames=trained_frames)
    return directory
