"""The tokenisation coco-caption applies before BLEU, CIDEr and ROUGE-L, in two interchangeable forms.

Every published caption/answer score computed with pycocoevalcap first runs Stanford CoreNLP 3.4.1's
``PTBTokenizer -preserveLines -lowerCase`` (a Java jar shipped inside pycocoevalcap) and then drops
the tokens in ``pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS``. Scores move by whole points when
the tokenisation differs, so it is reproduced here:

- :func:`java_ptb_tokenize` runs that very jar, so its output *is* pycocoevalcap's;
- :func:`python_ptb_tokenize` is a pure-Python re-implementation of the 3.4.1 lexer rules that matter
  for ordinary English text (words, contractions, hyphenation, numbers, abbreviations, brackets,
  quotes, dashes, ellipses, symbols). It needs no Java and is what ``--tokenizer python`` uses.

Known differences of the Python tokenizer (all rare in model answers; the test suite checks agreement
on an ordinary-text corpus against the jar):

- Java sees each caption as one line of a file holding all captions, so a single-letter abbreviation
  at the very end of a caption ("... option A.") loses its period when the *next caption* starts with a
  word such as "The" or "It"; Python treats the end of a caption as the end of the text.
- Runs of more than 250 characters inside a hyphenated token are split (a bound that keeps looping
  model output linear-time); "a@a@..."-like runs are not taken for e-mail addresses.
- Tokens that contain spaces in Java are never produced: SGML tags with attributes (``<a href=x>``),
  phone numbers written with spaces, "5 7/8"-style mixed fractions.
- URL and e-mail detection is simplified; ``<`` and ``>`` outside tags are plain symbol tokens.
- Characters outside the Basic Multilingual Plane (emoji) are dropped, as Java does, but Java's full
  list of "untokenizable" BMP characters is approximated by Unicode categories.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from pycocoevalcap.tokenizer import ptbtokenizer as _coco_ptb

from ..errors import AudioDialoguesError
from . import TOKENIZERS

#: Tokens coco-caption removes after tokenising. Note that ``-LRB-`` and friends are listed in upper
#: case while ``-lowerCase`` emits ``-lrb-``: parentheses therefore survive as tokens, in both paths.
PUNCTUATIONS = frozenset(_coco_ptb.PUNCTUATIONS)
CORENLP_JAR = Path(_coco_ptb.__file__).with_name(_coco_ptb.STANFORD_CORENLP_3_4_1_JAR)

# Line terminators of the Java lexer. pycocoevalcap only replaces "\n"; any other one inside a
# caption would split it in two and shift every later caption, so all of them become spaces here.
_LINE_BREAKS = re.compile("[\r\n\u2028\u2029\u000b\u000c\u0085]")
_SPACE_CHARS = " \t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u3000"
_CHUNKS = re.compile(f"[^{_SPACE_CHARS}\r\n\u2028\u2029\u000b\u000c\u0085]+")


class TokenizerError(AudioDialoguesError, RuntimeError):
    """The Java tokenizer could not run or returned something that does not line up with its input."""


# --- the Python tokenizer ------------------------------------------------------------------------


def _numeric_non_digits() -> str:
    """Ranges of BMP characters Python's ``\\w`` counts as alphanumeric but Java's isLetter/isDigit do
    not (categories No and Nl: superscripts, vulgar fractions, roman numerals), as a class body."""
    codes = [c for c in range(0x10000) if unicodedata.category(chr(c)) in ("No", "Nl")]
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# JFlex's [:letter:] is Java's Character.isLetter (categories L*), BMP only; the lexer adds soft hyphen
# and combining diacritics. [:digit:] is Character.isDigit (Nd), which is what Python's \d matches.
_L = f"(?:[^\\W\\d_{_numeric_non_digits()}]|[\u00ad\u0300-\u036f])"
_D = r"\d"
_AN = f"(?:{_L}|{_D})"
_APOS = "(?:['\u0092\u2019]|&apos;)"
_APOSETC = f"(?:{_APOS}|[\u0091\u2018\u201b])"
_HYPHEN = "[-_\u058a\u2010\u2011]"
_SPACE = f"[{_SPACE_CHARS}]"
_SPACENL = f"[{_SPACE_CHARS}\n]"

_WORD = f"{_L}(?:{_L}|{_D})*(?:[.!?]{_L}(?:{_L}|{_D})*)*"
_NUM = rf"(?:{_D}*(?:[.:,\u00ad\u066b\u066c]{_D}+)+|{_D}+)"
_ACRO = r"(?:(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)|[A-Za-z](?:\.[A-Za-z])+)"
_THING = f"(?:(?-i:[dDoOlL]){_APOSETC})?{_AN}+(?:{_HYPHEN}(?:(?-i:[dDoOlL]){_APOSETC})?{_AN}+)*"
# _AN already holds the soft hyphen. The head is bounded: unbounded, a long run like "a,a,a,..." (no
# hyphen to end it) would be rescanned from every comma, quadratic in the run's length.
_HTHING = rf"{_AN}(?:{_AN}|[.,]){{0,250}}(?:-(?:{_AN}+|{_ACRO}\.))+"
_REDAUX = f"{_APOS}(?:[msd]|re|ve|ll)"
_SWORD = f"{_L}*(?-i:[A-MO-Za-mo-z])\u00ad*"
_SREDAUX = f"n{_APOSETC}t"

# Abbreviations (CoreNLP 3.4.1 behaviour as observed): these keep their period.
_ABMONTH = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_ABDAYS = "Mon|Tue|Tues|Wed|Thu|Thurs|Fri"
_ABSTATE = (
    "Ala|Ariz|(?-i:A)z|(?-i:A)rk|Calif|Colo|Conn|Ct|Dak|(?-i:D)el|Fla|Ga|(?-i:I)ll|Ind|Kans?|Ky|(?-i:L)a"
    "|(?-i:M)ass|Md|Mich|Minn|(?-i:M)iss|Mo|Mont|Neb|Nev|Okla|(?-i:O)re|(?-i:P)a|Penn|Tenn|(?-i:T)ex|Va|Vt"
    "|(?-i:W)ash|Wisc?|Wyo"
)
_ABCOMP = "Inc|Cos?|Corp|Pp?tys?|Ltd|Plc|Bancorp|Dept|Bhd|Assn|Univ|Intl|Sys"
_ABPTIT = r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq"
_ABBREV1 = rf"(?:{_ABMONTH}|{_ABDAYS}|{_ABSTATE}|{_ABCOMP}|{_ABPTIT}|tel|est|ext|sq|ft|ph|etc|al|seq)\."
_ABTITLE = (
    "Mr|Mrs|Ms|(?-i:M)iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Mt"
    "|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det"
)
_ABBREV2 = rf"(?:{_ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Invt|Elec|Natl|M[ft]g)\."

_APOWORD = (
    f"{_APOS}n{_APOS}?|(?-i:[lLdDjJ]){_APOS}|Dunkin{_APOS}|somethin{_APOS}|ol{_APOS}|{_APOS}em"
    f"|(?-i:[A-HJ-XZn]){_APOSETC}{_L}{{2,}}|{_APOS}(?-i:[2-9])0s|{_APOS}till?"
    f"|{_L}+(?-i:[aeiouyAEIOUY]){_APOSETC}(?-i:[aeiouA-Z]){_L}*|{_APOS}cause|cont'd\\.?|nor'easter|c'mon"
    "|e'er|s'mores|ev'ry|li'l|nat'l"
)
_MISCSYMBOL = (
    "[\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba\u00d7\u00f7\u0387\u05be\u05c0"
    "\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e\u066a\u066d\u0703-\u070d"
    "\u07f6-\u07f8\u0964\u0965\u0e4f\u2020-\u2023\u2030-\u2038\u203b-\u203e\u2044\u207a-\u207f\u208a-\u208e"
    "\u2100-\u214f\u2190-\u21ff\u2200-\u22ff\u2300-\u23ff\u2500-\u27bf\u2900-\u2bff\u3012\u30fb"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)

#: Words after which the lexer takes "A." to end a sentence (first letter case-sensitive).
_SENTENCE_STARTS = (
    "A(?i:bout|ccording|dditionally|fter|n|s|t)?|B(?i:ut)|E(?i:arlier)|H(?i:e|er|ere|owever)|I(?i:f|n|t)"
    "|L(?i:ast)|M(?i:any|ore|r\\.|s\\.)|N(?i:ow)|O(?i:nce|ne|ther|ur)|S(?i:he|ince|o|ome|uch)"
    "|T(?i:hat|he|hen|here|hese|hey|his)|W(?i:e|hen|hile|hat)|Y(?i:et|ou)"
)
_SENTENCE_START_CHUNK = re.compile(f"^(?-i:{_SENTENCE_STARTS})$")

_LATEX_QUOTES = str.maketrans({
    "\u0091": "`", "\u2018": "`", "\u201b": "`", "\u2039": "`",
    "\u0092": "'", "\u2019": "'", "\u203a": "'",
    "\u0093": "``", "\u201c": "``", "\u00ab": "``",
    "\u0094": "''", "\u201d": "''", "\u00bb": "''",
    '"': "''",
})
_CURRENCY = {"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$", "\u20ac": "$"}
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def _latex_quotes(tok: str) -> str:
    return tok.replace("&apos;", "'").replace("&quot;", '"').translate(_LATEX_QUOTES)


def _hyphens(tok: str) -> str:
    return "--" if 3 <= len(tok) <= 4 else tok


def _amp(tok: str) -> str:
    return re.sub("(?i)&amp;", "&", tok)


def _phone(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


def _same(tok: str) -> str:
    return tok


# Each rule: (pattern, transform). Patterns may end in a trailing context group ``ctx`` that counts for
# the longest match (as JFlex's r1/r2 does) but is not consumed. Longest match wins; ties go to the
# rule listed first, as in the lexer.
_RULES: list[tuple[str, Callable[[str], str]]] = [
    ("(?P<tok>can)(?P<ctx>not)", _same),
    ("(?P<tok>gon)(?P<ctx>na)|(?P<tok2>got)(?P<ctx2>ta)|(?P<tok3>wan)(?P<ctx3>na)|(?P<tok4>gim)(?P<ctx4>me)"
     "|(?P<tok5>lem)(?P<ctx5>me)", _same),
    (f"(?P<tok>{_APOS}t)(?P<ctx>is|was)", _latex_quotes),
    (r"</?[A-Za-z!?][^>]{0,250}>", _same),
    ("&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", lambda t: "--"),
    ("&amp;", lambda t: "&"),
    ("&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", _same),
    (f"(?P<tok>{_WORD})(?P<ctx>{_REDAUX})", _same),
    (f"(?P<tok>{_SWORD})(?P<ctx>{_SREDAUX})", _same),
    (_WORD, _same),
    (_APOWORD, _same),
    (f"(?P<tok>(?-i:y){_APOS})(?P<ctx>{_L})", _same),
    (r"(?:https?|ftp)://[^\s\"<>|()]{1,2000}[^\s\"<>|.!?(){},-]", _same),
    (r"(?:www\.(?:[^\s\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}|(?:[a-z]+\.)+(?:com|net|org|edu))"
     r"(?:/[^\s\"<>|()]+[^\s\"<>|.!?(){},-])?", _same),
    (r"[a-zA-Z0-9][^\s\"<>|()\u00a0]{0,63}@(?:[^\s\"<>|().\u00a0]+\.)+[a-zA-Z]{2,4}", _same),
    (f"[@\uff20][a-zA-Z_][a-zA-Z_0-9]*|[#\uff03]{_L}(?:{_L}|{_D}|_)*(?:{_L}|{_D})", _same),
    (f"(?P<tok>{_REDAUX})(?P<ctx>[^A-Za-z])", _latex_quotes),
    (_SREDAUX, _latex_quotes),
    (f"{_D}{{1,2}}[-/]{_D}{{1,2}}[-/]{_D}{{2,4}}", _same),
    (f"[-+]?{_NUM}", _same),
    ("[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)", _same),
    (f"(?:{_D}{{1,4}}[-\u00a0])?{_D}{{1,4}}(?:\\\\?/|\u2044){_D}{{1,4}}", _same),
    ("[\u00bc\u00bd\u00be\u2153-\u215e]", lambda t: _FRACTIONS.get(t, t)),
    (f"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\\.D\\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap{_APOS}n"
     f"|c{_APOS}est", _amp),
    (f"(?P<tok>{_APOS}[0-9][0-9])(?P<ctx>{_SPACENL})", _same),
    (f"{_AN}+(?:-{_L}+){{0,2}}(?:\\\\?/{_AN}+(?:-{_L}+){{0,2}}){{1,2}}", _same),
    (r"(?-i:[A-Z])*\$|#", _same),
    ("[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20aa\u20ac\u20b9\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]",
     lambda t: _CURRENCY.get(t, t)),
    (f"{_ACRO}\\.", _same),
    (_ABBREV1, _same),
    (r"(?P<tok>(?:Nos?|Prop)\.)(?P<ctx>" + _SPACE + "*" + _D + ")", _same),
    (_ABBREV2, _same),
    # An acronym or a single letter with a period before a word that usually starts a sentence: the
    # lexer returns "A" (not "A.") and then "."; longer acronyms keep their period. Must precede the next.
    (f"(?P<tok>(?-i:[A-Za-z]))(?P<ctx>\\.{_SPACE}+(?-i:{_SENTENCE_STARTS}){_SPACE})", _same),
    (r"(?-i:[A-Za-z])\.", _same),
    (f"(?P<tok>(?:{_WORD}|{_HTHING}|{_THING})\\.)(?P<ctx>[,;:])", _same),
    (r"(?:\(\d{3}\)\u00a0?|\d{3}[-\u00a0.])\d{3}[-\u00a0.]\d{4}", _phone),
    ("\"|&quot;", lambda t: "``"),  # left or right: both are dropped as punctuation
    (r"\+|[%&\u2030\u2031]|~|\^|\||\\", _same),
    (r"[()\[\]{}]", lambda t: _BRACKETS[t]),
    (r"&lt;|<+", lambda t: "<" if t == "&lt;" else t),
    (r"&gt;|>+", lambda t: ">" if t == "&gt;" else t),
    (r"-+", _hyphens),
    ("\\.{3,5}|[\u0085\u2026]", lambda t: "..."),
    (r"@+|#+|_+", _same),
    (r"\*+|(?:\\\*){1,3}", _same),
    (r"[,;:]", _same),
    (r"[?!]+", _same),
    ("[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa]", _same),
    (r"=|/", _same),
    (_HTHING, _same),
    (_THING, _same),
    (r"(?-i:[A-Z])+(?:(?:[+&]|&amp;)(?-i:[A-Z])+)+", _amp),
    (f"(?P<tok>')(?P<ctx>[A-Za-z][^{_SPACE_CHARS}\n])", lambda t: "`"),
    (_REDAUX, _latex_quotes),
    ("(?:['\u0092\u2019]|&apos;)|''|[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e"
     "\u201f\u2039\u203a\u00ab\u00bb]{1,2}", _latex_quotes),
    (_MISCSYMBOL, _same),
]


@functools.cache
def _compiled_rules() -> list[tuple[re.Pattern, Callable[[str], str]]]:
    """Compiled on first use (about half a second), so importing the package stays fast."""
    return [(re.compile(pattern, re.IGNORECASE), transform) for pattern, transform in _RULES]


def _consumed(match: re.Match) -> int:
    """End of the token proper: before the trailing context group, if the rule has one."""
    for name, value in match.groupdict().items():
        if value is not None and name.startswith("ctx"):
            return match.start(name)
    return match.end()


@functools.lru_cache(maxsize=1 << 18)
def _scan(chunk: str, tail: str) -> tuple[str, ...]:
    """Tokens of one whitespace-free ``chunk``; ``tail`` is a stand-in for the text that follows it.

    Splitting on whitespace first and caching per (chunk, tail) makes the tokenizer fast (model answers
    reuse a small vocabulary of chunks); tokens never span whitespace, so this is exact for the rules here.
    """
    text = chunk + tail
    end = len(chunk)
    tokens: list[str] = []
    pos = 0
    while pos < end:
        best: tuple[int, int, Callable[[str], str]] | None = None
        for regex, transform in _compiled_rules():
            match = regex.match(text, pos)
            if match is None or match.end() == pos:
                continue
            stop = _consumed(match)
            if stop > end or stop == pos:
                continue
            if best is None or match.end() > best[0]:
                best = (match.end(), stop, transform)
        if best is None:
            pos += 1  # untokenizable (emoji, control characters, ...): dropped, as the lexer does
            continue
        _, stop, transform = best
        tok = text[pos:stop]
        tokens.append(transform(tok).replace("\u00ad", ""))
        pos = stop
    return tuple(tokens)


def _tail(chunk: str, word: str, after_following: str) -> str:
    """What follows ``chunk`` (the next chunk ``word``), reduced to what the lexer's lookahead rules can tell
    apart (so the per-chunk cache stays small): the next word itself only after "X.", else the class of its
    first character."""
    if chunk.endswith(".") and _SENTENCE_START_CHUNK.match(word):
        return " " + word + after_following
    c = word[0]
    if c.isupper():
        return " A"
    if c.isalpha():
        return " a"
    if c.isdigit():
        return " 0"
    return " " + c


@functools.lru_cache(maxsize=1 << 18)
def _words(chunk: str, tail: str) -> tuple[str, ...]:
    """The words :func:`python_ptb_tokenize` keeps of one chunk: its tokens lower-cased, punctuation dropped."""
    return tuple(w for w in (tok.lower() for tok in _scan(chunk, tail)) if w not in PUNCTUATIONS)


def clear_cache() -> None:
    """Forget every chunk seen (benchmarks use it to time a cold tokenizer, as in a fresh process)."""
    _scan.cache_clear()
    _words.cache_clear()


def python_ptb_tokenize(text: str) -> str:
    """``text`` tokenised as coco-caption does: PTB tokens, lower-cased, punctuation dropped, space-joined."""
    chunks = _CHUNKS.findall(_LINE_BREAKS.sub(" ", text))
    last = len(chunks) - 1
    words: list[str] = []
    for i, chunk in enumerate(chunks):
        tail = _tail(chunk, chunks[i + 1], " " if i + 1 < last else "") if i < last else ""
        words.extend(_words(chunk, tail))
    return " ".join(words)


# --- the Java tokenizer --------------------------------------------------------------------------


def java_ptb_tokenize(sentences: Sequence[str]) -> list[str]:
    """Tokenise ``sentences`` with pycocoevalcap's CoreNLP 3.4.1 jar, exactly as its PTBTokenizer does.

    Same jar, same flags, same one-line-per-caption file, same punctuation filter; unlike pycocoevalcap
    the file goes to a private temporary folder (not into site-packages, which may be read-only), every
    line terminator is replaced (not only ``\\n``), and the number of lines returned is checked.
    """
    if not sentences:
        return []
    java = shutil.which("java")
    if java is None:
        raise TokenizerError("tokenizer 'ptb' runs pycocoevalcap's Java PTBTokenizer, but no 'java' is on PATH; "
                             "install a JRE (e.g. apt-get install default-jre-headless) or use tokenizer 'python'")
    if not CORENLP_JAR.is_file():
        raise TokenizerError(f"pycocoevalcap's CoreNLP jar is missing: {CORENLP_JAR}")
    with tempfile.TemporaryDirectory(prefix="audio-dialogues-ptb-") as tmp:
        path = os.path.join(tmp, "captions.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(_LINE_BREAKS.sub(" ", s) for s in sentences))
        cmd = [java, "-cp", str(CORENLP_JAR), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", path]
        done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0:
        raise TokenizerError(f"Java PTBTokenizer failed (exit {done.returncode}): "
                             f"{done.stderr.decode(errors='replace').strip()[-2000:]}")
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) == len(sentences) + 1 and lines[-1] == "":
        lines.pop()
    if len(lines) != len(sentences):
        raise TokenizerError(f"Java PTBTokenizer returned {len(lines)} lines for {len(sentences)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines]


def tokenize(sentences: Sequence[str], tokenizer: str = "python") -> list[str]:
    """Tokenise a batch of captions with ``python`` (no Java needed) or ``ptb`` (pycocoevalcap's jar)."""
    if tokenizer == "python":
        return [python_ptb_tokenize(s) for s in sentences]
    if tokenizer == "ptb":
        return java_ptb_tokenize(sentences)
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")

