"""The checkpoint's own `tokenizer.json` through the `tokenizers` library.

Every special-token id is looked up by its string: the ids differ between checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from janus_cli.config import read_json
from janus_cli.errors import CheckpointError

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
PRO_ROLES = ("<|User|>", "<|Assistant|>")
PLAIN_ROLES = ("User", "Assistant")


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    image: int  # <image_placeholder>
    boi: int  # <begin_of_image>
    eoi: int  # <end_of_image>
    gen: int | None  # <｜begin▁of▁generation｜> (JanusFlow only)


class Tokenizer:
    def __init__(self, folder: Path, flow: bool = False):
        folder = Path(folder)
        path = folder / "tokenizer.json"
        try:
            self.tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # the Rust library raises plain Exceptions
            raise CheckpointError(f"{path}: unreadable tokenizer ({str(e).splitlines()[0][:160]})") from None
        config = (
            read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").exists() else {}
        )
        specials = (
            read_json(folder / "special_tokens_map.json")
            if (folder / "special_tokens_map.json").exists()
            else {}
        )
        proc = (
            read_json(folder / "processor_config.json") if (folder / "processor_config.json").exists() else {}
        )
        self.add_bos = bool(config.get("add_bos_token", True))
        tags = {
            "image": proc.get("image_tag", "<image_placeholder>"),
            "boi": proc.get("image_start_tag", "<begin_of_image>"),
            "eoi": proc.get("image_end_tag", "<end_of_image>"),
        }
        if flow:
            tags["gen"] = proc.get("image_gen_tag", "<｜begin▁of▁generation｜>")
        # The official processors add missing tags as special tokens at load time (new ids at
        # the end of the vocabulary); the Janus processor only ever adds <image_placeholder>.
        addable = list(tags.values()) if flow else [tags["image"]]
        missing = [t for t in addable if self.tok.token_to_id(t) is None]
        if missing:
            self.tok.add_special_tokens(missing)
        ids = {name: self._id(s, path) for name, s in tags.items()}
        self.special = SpecialIds(
            bos=self._id(BOS, path),
            eos=self._id(EOS, path),
            pad=self._id(PAD, path),
            image=ids["image"],
            boi=ids["boi"],
            eoi=ids["eoi"],
            gen=ids.get("gen"),
        )
        # Janus-Pro was trained with <|User|>/<|Assistant|> roles, listed in its special tokens;
        # Janus-1.3B and JanusFlow use plain words.
        pro = PRO_ROLES[0] in specials.get("additional_special_tokens", [])
        self.roles = PRO_ROLES if pro else PLAIN_ROLES
        if pro:
            for role in PRO_ROLES:
                self._id(role, path)

    def _id(self, token: str, path: Path) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise CheckpointError(f"{path}: tokenizer lacks the special token {token!r}")
        return i

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of TEXT with BOS first, as the official (LlamaTokenizerFast) processor."""
        ids = self.tok.encode(text, add_special_tokens=False).ids
        return [self.special.bos, *ids] if self.add_bos else ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special)


class Detokenizer:
    """An answer's text as its tokens come, in pieces that never split a character.

    Byte-level BPE splits a character's UTF-8 bytes across tokens; until the last byte comes,
    `decode` ends in U+FFFD. A piece waits for the character to complete, and `flush` gives what
    is still held when the answer ends (decoded as `decode` shows it, U+FFFD included), so the
    pieces always join to `decode(tokens)`: streamed and whole answers are the same text.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.shown = ""  # the text given out so far

    def step(self, tokens: list[int]) -> str:
        """The new whole characters of TOKENS (the answer so far), or ""."""
        text = self.tokenizer.decode(tokens)
        if text.endswith("\ufffd") or len(text) <= len(self.shown):
            return ""
        return self._advance(text)

    def flush(self, tokens: list[int]) -> str:
        """The rest of TOKENS' text, the answer being over."""
        return self._advance(self.tokenizer.decode(tokens))

    def _advance(self, text: str) -> str:
        piece, self.shown = text[len(self.shown) :], text
        return piece
