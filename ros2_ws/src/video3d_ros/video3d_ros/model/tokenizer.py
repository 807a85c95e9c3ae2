"""Tokenizer: Qwen2-style byte-level BPE with the model's extra tokens.

:func:`build_tokenizer` trains a small byte-level BPE on a text corpus and wraps
it as a transformers fast tokenizer with the Qwen2 special tokens
(``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``), the video placeholder
``<image>`` and the task tokens ``<ground>`` and ``<coord>`` (added as plain
added tokens, as the released checkpoints do). Tests build one from templated
scene text; the training package trains the shipped one on its corpus.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .config import TokenIds

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VIDEO_TOKEN = "<image>"  # placeholder expanded into the visual tokens
GROUND_TOKEN = "<ground>"
COORD_TOKEN = "<coord>"
QWEN2_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2,
                    add_model_tokens: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and add the model's tokens.

    Args:
        corpus: training texts.
        vocab_size: BPE vocabulary size including the 256 byte symbols and special tokens.
        min_frequency: minimum pair frequency for a merge.
        add_model_tokens: add ``<image>``, ``<ground>``, ``<coord>`` (False gives a plain
            Qwen2-style tokenizer, e.g. to imitate a released base tokenizer).
    """
    if vocab_size < 256 + len(QWEN2_SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size {vocab_size} cannot hold the 256 byte symbols")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=list(QWEN2_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT,
                                   padding_side="right")
    if add_model_tokens:
        fast.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN]})
        fast.add_tokens([GROUND_TOKEN, COORD_TOKEN])
    return fast


def ensure_video_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Add the ``<image>`` placeholder if a released tokenizer lacks it.

    Safe for any vocabulary size: placeholders are never looked up in the
    embedding table (the model replaces them before the lookup).
    """
    if VIDEO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN]})


def token_ids_of(tokenizer: PreTrainedTokenizerBase) -> TokenIds:
    """The ids the model needs, checked to exist as single tokens."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in (VIDEO_TOKEN, GROUND_TOKEN, COORD_TOKEN, IM_END) if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks the tokens {missing}")
    eos = [vocab[IM_END]] + ([vocab[ENDOFTEXT]] if ENDOFTEXT in vocab else [])
    return TokenIds(video=vocab[VIDEO_TOKEN], ground=vocab[GROUND_TOKEN],
                    coord=vocab[COORD_TOKEN], eos=tuple(eos))
