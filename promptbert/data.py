"""CoNLL-style corpora and the word splitter for raw text.

Files: one ``token ... TAG`` per line (any number of columns, tag last), blank
lines between sentences, ``-DOCSTART-`` lines skipped. IOB1, IOB2, IOBES and
BILOU are normalised to IOB2, the only scheme the model is trained on.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

SPLIT_ALIASES = {"train": ("train",), "dev": ("dev", "valid", "validation"), "test": ("test",)}
SPLIT_SUFFIXES = (".txt", ".conll", ".iob", ".bio")
_TAG = re.compile(r"^(?:O|([BIESUL])-(\S+))$")


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = ""  # file the sentence came from
    line: int = 0  # line of its first word (word i is on line + i)
    doc: int = 0  # its document: how many -DOCSTART- lines came before it


def find_split(data_dir: str | Path, split: str) -> Path:
    """The file of ``split`` (train/dev/test; dev also as valid/validation) in ``data_dir``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    names = SPLIT_ALIASES.get(split, (split,))
    for name in names:
        for suffix in SPLIT_SUFFIXES:
            path = data_dir / f"{name}{suffix}"
            if path.is_file():
                return path
    tried = ", ".join(f"{n}{SPLIT_SUFFIXES[0]}" for n in names)
    raise DataError(f"{data_dir}: no {split!r} split (looked for {tried} and .conll/.iob/.bio)")


def _to_iob2(tags: list[str], where: list[str]) -> list[str]:
    """Normalise one sentence's tags (IOB1/IOB2/IOBES/BILOU) to IOB2."""
    out: list[str] = []
    prev_type = None
    for tag, loc in zip(tags, where):
        m = _TAG.match(tag)
        if not m:
            raise DataError(f"{loc}: unknown tag {tag!r} (expected O or B-/I-/E-/S-/L-/U-TYPE)")
        prefix, etype = m.group(1), m.group(2)
        if prefix is None:
            out.append("O")
            prev_type = None
            continue
        if prefix in ("B", "S", "U"):
            out.append(f"B-{etype}")
        elif prefix in ("I", "E", "L"):
            # IOB1 (and broken IOB2) start an entity with I-: continuing only if the type matches.
            out.append(f"I-{etype}" if prev_type == etype else f"B-{etype}")
        prev_type = None if prefix in ("S", "U", "E", "L") else etype
    return out


def read_conll(path: str | Path) -> list[Sentence]:
    """Read a CoNLL file into IOB2 sentences; malformed lines raise DataError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    where: list[str] = []
    doc = 0

    def flush() -> None:
        if words:
            first = int(where[0].rsplit(":", 1)[1])
            sentences.append(Sentence(tuple(words), tuple(_to_iob2(tags, where)), str(path), first, doc))
            words.clear(), tags.clear(), where.clear()

    for lineno, line in enumerate(text.splitlines(), 1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
            doc += 1
            continue
        if len(cols) < 2:
            raise DataError(f"{path}:{lineno}: expected 'token ... TAG', got {line.strip()!r}")
        words.append(cols[0])
        tags.append(cols[-1])
        where.append(f"{path}:{lineno}")
    flush()
    if not sentences:
        raise DataError(f"{path}: empty corpus (no sentences)")
    return sentences


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> list[Sentence]:
    """Sentences of one split; ``limit`` keeps the first N (for ablations at small data)."""
    sentences = read_conll(find_split(data_dir, split))
    return sentences[:limit] if limit else sentences


def check_labels(sentences: list[Sentence], entity_types: tuple[str, ...] | list[str]) -> None:
    """Raise DataError at the first tag whose type is not in the label map."""
    known = set(entity_types)
    for s in sentences:
        for i, tag in enumerate(s.tags):
            if tag != "O" and tag[2:] not in known:
                raise DataError(
                    f"{s.source}:{s.line + i}: label {tag!r} is not in the label map ({', '.join(entity_types)})"
                )


def only_types(sentences: list[Sentence], entity_types: tuple[str, ...] | list[str]) -> list[Sentence]:
    """The sentences with every entity of another type tagged O: the gold answer to a prompt naming just these."""
    keep = set(entity_types)
    out = []
    for s in sentences:
        tags = tuple(t if t == "O" or t[2:] in keep else "O" for t in s.tags)
        out.append(s if tags == s.tags else Sentence(s.words, tags, s.source, s.line, s.doc))
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _combining_marks() -> str:
    """Every combining mark (Unicode category M) of this Python's Unicode tables, as the body of a
    regex character class. Why: ``\\w`` leaves them out, and a word written with them (Hindi, Thai,
    Arabic with vowel marks, any decomposed accent: "Zu\\u0308rich") fell apart into fragments and
    its entity into pieces. Marks live in U+0300-U+1FFFF and the variation selectors of plane 14,
    so only those are scanned (~10 ms at import, not the ~100 ms of all code points)."""
    ranges: list[tuple[int, int]] = []
    for cp in itertools.chain(range(0x300, 0x20000), range(0xE0100, 0xE01F0)):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    esc = lambda cp: f"\\U{cp:08x}"  # noqa: E731
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


# Raw text -> words with character offsets, as CoNLL-2003 (Penn Treebank style) tokenised its text,
# so that the service feeds the model the words it was trained on. Checked on CoNLL itself: each
# sentence's words joined by spaces should split back into them (`promptbert evaluate --as-text`).
# A combining mark belongs to the word or symbol it follows ("❤️" is one symbol); control
# characters are separators, never words.
_CLITIC_TAIL = r"(?:[sS]|re|RE|m|M|ve|VE|ll|LL|d|D)\b"
_CLITIC = rf"['’]{_CLITIC_TAIL}"  # 's 're 'm 've 'll 'd stand alone
_NT = r"n['’][tT]\b"  # "do" + "n't"
# Abbreviations CoNLL keeps with their period (from its training split, plus common titles and
# company forms); only before more text or a clitic ("Corp.'s"), so that a sentence's own final period
# stays a word.
_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Gen|Lt|Col|Capt|Sgt|Gov|Sen|Rep|Rev|Co|Corp|Inc|Ltd|Bros|vs|vol|"
    "Jan|Feb|Aug|Sept|Oct|Nov|Dec|Calif|Fla|Mt|Ft|Ave"
)
_ABBREVIATION_MAX = max(len(a) for a in _ABBREVIATIONS.split("|"))  # a cheap look ahead first: 1.6x faster


def _word_regex(marks: str) -> re.Pattern[str]:
    w = rf"[\w{marks}]" if marks else r"\w"
    m = rf"[{marks}]*" if marks else ""
    return re.compile(
        r"(?<![^\n])\d{1,3}\.(?=[ \t])"  # "1." opening a line (a ranked list)
        rf"|(?:[^\W\d_]{m}\.){{2,}}(?:-{w}+)*"  # U.S. / e.g. / U.S.-led
        rf"|(?<!\w)(?=[A-Za-z]{{1,{_ABBREVIATION_MAX}}}\.[\s'’])(?:(?i:{_ABBREVIATIONS})|[A-Z])\.(?=\s+\S|{_CLITIC})"  # Corp. / vs. / the initial of "J. Smith"
        r"|(?<!\w)[A-Z]{1,3}\$"  # C$ / US$
        rf"|{_NT}|{_CLITIC}"
        rf"|{w}+(?={_NT})"  # "do" of "don't"
        rf"|{w}+(?:(?:[-/.,:&]|['’](?!{_CLITIC_TAIL})){w}+)*"  # words, O'Brien, hyphenated words, numbers, dates
        r"|(?<!\w)[+.]\d+(?:[.,]\d+)*"  # +44, .500
        r"|-{2,}|\.{2,}"  # -- / ...
        rf"|[^\w\s{marks}\x00-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]{m}"  # any other visible symbol
    )


_WORD = _word_regex(_combining_marks())
# The same without the 300 ranges of marks, which ASCII text cannot hold: 2x faster on CoNLL sentences.
_WORD_ASCII = _word_regex("")


def document_contexts(sentences: Sequence[Sentence], words: int) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per sentence, up to ``words`` words before and after it in its document: the sentences next to
    it in the list, from the same file and between the same -DOCSTART- lines (FLERT-style context)."""
    out = []
    for i, s in enumerate(sentences):
        def same(j: int) -> bool:
            return 0 <= j < len(sentences) and (sentences[j].source, sentences[j].doc) == (s.source, s.doc)

        left: list[str] = []
        j = i - 1
        while len(left) < words and same(j):
            left[:0] = sentences[j].words
            j -= 1
        right: list[str] = []
        j = i + 1
        while len(right) < words and same(j):
            right.extend(sentences[j].words)
            j += 1
        out.append((tuple(left[-words:]) if words else (), tuple(right[:words])))
    return out


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text with their character offsets: ``text[start:end] == word``."""
    pattern = _WORD_ASCII if text.isascii() else _WORD
    return [(m.group(), m.start(), m.end()) for m in pattern.finditer(text)]


_SENTENCE_ENDS = frozenset({".", "!", "?", "...", "\u2026"})
_CLOSERS = frozenset({'"', "'", ")", "]", "}", "\u2019", "\u201d", "\u00bb"})
SHORT_LINE = 40  # characters: a line break after a shorter line ends a sentence (sentence_bounds)


def sentence_bounds(text: str, words: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Word index ranges [a, b) of the sentences of a raw text, from its ``split_words``: a sentence
    ends after a standalone . ! ? or ... (with the closing quotes and brackets that touch it), at a
    blank line, or at a line break after a line shorter than SHORT_LINE characters (a heading, a
    dateline, a table row). A longer line's break is taken for wrapping: hard-wrapped text would
    otherwise cut a name apart where a line ends between its words. An abbreviation's period is
    not standalone (split_words keeps it), so "Mr. Smith" stays whole. Why: the model was trained on one sentence at a time, and
    tagging several as one sequence cost F1 (CoNLL documents as text: docs/design.md)."""
    bounds: list[tuple[int, int]] = []
    start, i, n = 0, 0, len(words)
    while i < n:
        j = i + 1
        if words[i][0] in _SENTENCE_ENDS:
            while j < n and words[j][1] == words[j - 1][2] and (words[j][0] in _CLOSERS or words[j][0] in _SENTENCE_ENDS):
                j += 1
            cut = True
        elif j < n and "\n" in (gap := text[words[i][2]:words[j][1]]):
            line_start = text.rfind("\n", 0, words[i][2]) + 1
            cut = gap.count("\n") > 1 or words[i][2] - line_start < SHORT_LINE
        else:
            cut = False
        if cut and j < n:
            bounds.append((start, j))
            start = j
        i = j
    if start < n:
        bounds.append((start, n))
    return bounds
