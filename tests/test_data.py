import pytest

from promptbert.data import check_labels, find_split, load_split, read_conll, split_words
from promptbert.errors import DataError

IOB2 = "Acme B-ORG\nhired O\nKenyan B-MISC\nengineers O\nAmara B-PER\nOkafor I-PER\nCape B-LOC\nTown I-LOC\nLagos B-LOC\n"
IOB1 = "Acme I-ORG\nhired O\nKenyan I-MISC\nengineers O\nAmara I-PER\nOkafor I-PER\nCape I-LOC\nTown I-LOC\nLagos B-LOC\n"
IOBES = "Acme S-ORG\nhired O\nKenyan S-MISC\nengineers O\nAmara B-PER\nOkafor E-PER\nCape B-LOC\nTown E-LOC\nLagos S-LOC\n"
EXPECTED = ("B-ORG", "O", "B-MISC", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-LOC")


@pytest.mark.parametrize("body", [IOB2, IOB1, IOBES], ids=["iob2", "iob1", "iobes"])
def test_schemes_normalise_to_iob2(tmp_path, body):
    p = tmp_path / "train.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\n" + body.replace(" ", " NNP B-NP ") + "\n", encoding="utf-8")
    (s,) = read_conll(p)
    assert s.words[:2] == ("Acme", "hired")
    assert s.tags == EXPECTED


def test_blank_lines_split_sentences_and_docstart_is_skipped(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\na O\nb B-PER\n\n\n-DOCSTART- -X- -X- O\nc O\n\n", encoding="utf-8")
    sents = read_conll(p)
    assert [s.words for s in sents] == [("a", "b"), ("c",)]
    assert sents[1].line == 8


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a O\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt:2: expected"):
        read_conll(p)


def test_unknown_tag_scheme(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a O\nb X-PER\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt:2: unknown tag 'X-PER'"):
        read_conll(p)


def test_empty_corpus_and_missing_split(tmp_path):
    (tmp_path / "train.txt").write_text("-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty corpus"):
        load_split(tmp_path, "train")
    with pytest.raises(DataError, match="no 'dev' split"):
        find_split(tmp_path, "dev")
    with pytest.raises(DataError, match="data folder not found"):
        find_split(tmp_path / "nope", "train")


def test_dev_aliases(tmp_path):
    (tmp_path / "valid.txt").write_text("a O\n", encoding="utf-8")
    assert find_split(tmp_path, "dev").name == "valid.txt"


def test_label_not_in_map_names_line(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a O\nb B-PER\n\nc B-DATE\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.txt:4: label 'B-DATE' is not in the label map"):
        check_labels(read_conll(p), ("PER",))


@pytest.mark.parametrize(
    "text",
    ["Germany's rep said U.S. sales rose 3.5% to $1,000 (Thursday).", "  Zürich\t\n naïve\x00café\u200b ok  ", "", "   ", "日本 の 東京"],
)
def test_split_words_offsets_slice_the_text(text):
    words = split_words(text)
    for w, s, e in words:
        assert text[s:e] == w and w.strip() == w and w
    assert "\x00" not in "".join(w for w, _, _ in words)


@pytest.mark.parametrize(
    "text, words",
    [
        ("Zu\u0308rich", ["Zu\u0308rich"]),  # a decomposed accent (NFD)
        ("नरेन्द्र मोदी दिल्ली में", ["नरेन्द्र", "मोदी", "दिल्ली", "में"]),  # Devanagari vowel signs and virama
        ("กรุงเทพมหานคร", ["กรุงเทพมหานคร"]),  # Thai vowel marks
        ("مُحَمَّد", ["مُحَمَّد"]),  # Arabic harakat
        ("❤\ufe0f Paris", ["❤\ufe0f", "Paris"]),  # a symbol keeps its variation selector
        ("U\u0308.S. don't", ["U\u0308.S.", "do", "n't"]),
    ],
)
def test_split_words_keeps_combining_marks_in_their_word(text, words):
    """A mark is part of the word it follows (\\w alone leaves marks out and would cut such words apart)."""
    assert [w for w, _, _ in split_words(text)] == words


def test_split_words_same_words_composed_or_decomposed():
    import unicodedata

    text = "Việt Nam and São Paulo met Zoë Saldaña in Zürich."
    nfc, nfd = (split_words(unicodedata.normalize(form, text)) for form in ("NFC", "NFD"))
    assert [unicodedata.normalize("NFC", w) for w, _, _ in nfd] == [w for w, _, _ in nfc]


def test_split_words_knows_every_combining_mark():
    """The mark class is built by scanning only part of Unicode: check it against all of it."""
    import sys
    import unicodedata

    marks = [chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("M")]
    assert len(marks) > 2000
    assert [m for m in marks if len(split_words("a" + m)) != 1] == []


@pytest.mark.parametrize("text", ["Germany's rep said U.S. sales rose 3.5% to $1,000 (Thursday).", "I don't -- e.g. A&B/C: x_y 1996-08-22!", "\x01a\x7f b"])
def test_split_words_ascii_fast_path_splits_like_the_full_one(text):
    from promptbert import data

    assert text.isascii()
    assert split_words(text) == [(m.group(), m.start(), m.end()) for m in data._WORD.finditer(text)]


@pytest.mark.parametrize(
    "text, words",
    [
        ("A. Symonds met Mr. Smith of Acme Corp. in St. Louis", ["A.", "Symonds", "met", "Mr.", "Smith", "of", "Acme", "Corp.", "in", "St.", "Louis"]),
        ("He signed for Acme Corp. It was Plan B.", ["He", "signed", "for", "Acme", "Corp.", "It", "was", "Plan", "B", "."]),
        ("ACME CORP. AND ST. LOUIS vs. Zinc.", ["ACME", "CORP.", "AND", "ST.", "LOUIS", "vs.", "Zinc", "."]),
        ("Microsoft Corp.'s shares", ["Microsoft", "Corp.", "'s", "shares"]),
        ("1. Michael Johnson ( U.S. ) 19.32\n2. Frank Fredericks", ["1.", "Michael", "Johnson", "(", "U.S.", ")", "19.32", "2.", "Frank", "Fredericks"]),
        ("He came 3. Then U.S.-led talks", ["He", "came", "3", ".", "Then", "U.S.-led", "talks"]),
        ("I'm sure they've said we're O'Brien's men", ["I", "'m", "sure", "they", "'ve", "said", "we", "'re", "O'Brien", "'s", "men"]),
        ("O\u2019Neill\u2019s car isn\u2019t", ["O\u2019Neill", "\u2019s", "car", "is", "n\u2019t"]),
        ("C$ 5 , US$ 3 , +44 171 , .500 -- or ...", ["C$", "5", ",", "US$", "3", ",", "+44", "171", ",", ".500", "--", "or", "..."]),
        ("the players' union 'quoted'", ["the", "players", "'", "union", "'", "quoted", "'"]),
    ],
)
def test_split_words_as_conll_tokenised(text, words):
    """Raw text splits into the words CoNLL-2003 would have: initials, abbreviations and list numbers
    keep their period (not a sentence's final one), clitics stand alone, O'Brien is one word."""
    assert [w for w, _, _ in split_words(text)] == words


@pytest.mark.parametrize(
    "text, sentences",
    [
        ('Mr. Smith went to Washington. He said "Hi." Then left!\nNew line here',
         ["Mr. Smith went to Washington .", 'He said " Hi . "', "Then left !", "New line here"]),
        ("A. Symonds ( Australia ) 63 . Next one?! Yes...", ["A. Symonds ( Australia ) 63 .", "Next one ? !", "Yes ..."]),
        ("U.S. talks end. (Reuters) no stop\n\n", ["U.S. talks end .", "( Reuters ) no stop"]),
        ("No end", ["No end"]),
        ("", []),
        ("The chancellor said on Tuesday that Angela Merkel met Emmanuel\nMacron in Paris and",
         ["The chancellor said on Tuesday that Angela Merkel met Emmanuel Macron in Paris and"]),  # a wrapped line
        ("LONDON 1996-08-30\nAngela Merkel met Macron", ["LONDON 1996-08-30", "Angela Merkel met Macron"]),  # a short line
        ("The chancellor said on Tuesday that Angela Merkel met\n\nMacron", ["The chancellor said on Tuesday that Angela Merkel met", "Macron"]),
    ],
)
def test_sentence_bounds(text, sentences):
    """Ends after a standalone . ! ? ... (with closers touching it), at a blank line or after a short
    line (a long line's break is wrapping); an abbreviation's or initial's period ends nothing."""
    from promptbert.data import sentence_bounds

    words = split_words(text)
    assert [" ".join(w for w, _, _ in words[a:b]) for a, b in sentence_bounds(text, words)] == sentences


def test_read_conll_numbers_documents(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("a O\n\n-DOCSTART- -X- -X- O\n\nb O\n\nc O\n\n-DOCSTART- -X- -X- O\nd O\n", encoding="utf-8")
    assert [(s.words[0], s.doc) for s in read_conll(p)] == [("a", 0), ("b", 1), ("c", 1), ("d", 2)]
