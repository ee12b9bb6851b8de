"""scalelab tokenizers as Hugging Face `tokenizers` objects that encode every text to the same ids.

- byte: a BPE model with no merges over the 256 byte symbols of the byte-level alphabet (GPT-2's
  byte-to-unicode table), id = byte value, and the end-of-document token as id 256;
- char: a BPE model with no merges over the corpus characters, id = index, end-of-document last;
- bpe / pretrained: already a `tokenizers` tokenizer: written as it is.

One difference remains for byte and char: `tokenizers` matches the literal text "<|endoftext|>" as
the end-of-document token, where scalelab spells it out byte by byte (scalelab's own BPE
tokenizer matches it too, so it is the same there).
"""

from __future__ import annotations

import json
from pathlib import Path

EOT_TEXT = "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The printable stand-in of each byte 0..255 in byte-level BPE (Radford et al. 2019, GPT-2):
    printable Latin-1 bytes stand for themselves, the others for code points from 256 upwards."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    symbols, extra = [], 0
    for b in range(256):
        if b in keep:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def to_hf_tokenizer(tokenizer):
    """A `tokenizers.Tokenizer` giving the same ids as `tokenizer` (byte, char, bpe or pretrained)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if tokenizer.kind == "byte":
        vocab = {s: i for i, s in enumerate(byte_symbols())}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
    elif tokenizer.kind == "char":
        tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(tokenizer.chars)}, merges=[]))
        tok.decoder = decoders.Fuse()
    else:
        return Tokenizer.from_str(tokenizer.tok.to_str())
    tok.add_special_tokens([AddedToken(EOT_TEXT, special=True, normalized=False)])
    if tok.token_to_id(EOT_TEXT) != tokenizer.eot_id:
        raise AssertionError(f"end-of-document id {tok.token_to_id(EOT_TEXT)} != {tokenizer.eot_id}")
    return tok


def eot_text(tokenizer, hf_tok) -> str:
    """The text of the end-of-document token in the exported tokenizer."""
    return hf_tok.id_to_token(tokenizer.eot_id)


def save_tokenizer(tokenizer, out: Path, model_max_length: int) -> dict:
    """Write tokenizer.json and tokenizer_config.json (loaded by `AutoTokenizer`); return the special tokens."""
    hf_tok = to_hf_tokenizer(tokenizer)
    eot = eot_text(tokenizer, hf_tok)
    hf_tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "bos_token": eot, "eos_token": eot, "pad_token": eot,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "scalelab_tokenizer": tokenizer.kind,
    }  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps({k: eot for k in ("bos_token", "eos_token", "pad_token")}))
    return {"eot": eot, "eot_id": tokenizer.eot_id}
